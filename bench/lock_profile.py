"""Where a hot SKU's orders spend their time: waiting for the stock rows' lock, holding it, committing.

Attached to an engine, it times every `SELECT ... FOR UPDATE` of `stock_levels` (the wait is in that
statement) and, per thread, the moment the first such lock was granted; `committed` closes the hold at the
commit's end. The summary is in milliseconds per order, so `hold x orders` next to the run's seconds shows
whether the serial section under the lock is what bounds a hot SKU.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, event


class LockProfile:
    """Per-thread timings of the stock lock; thread-safe totals."""

    def __init__(self, engine: Engine) -> None:
        self._local = threading.local()
        self._mutex = threading.Lock()
        self.orders = 0
        self.lock_wait = 0.0
        self.hold = 0.0
        self.commit = 0.0
        self.statements_held = 0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._local.started = time.perf_counter()
        if getattr(self._local, "granted", None) is not None:
            self._local.held_statements = getattr(self._local, "held_statements", 0) + 1

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM stock_levels" in statement and "FOR UPDATE" in statement:
            now = time.perf_counter()
            waited = now - self._local.started
            with self._mutex:
                self.lock_wait += waited
            if getattr(self._local, "granted", None) is None:
                self._local.granted = now
                self._local.held_statements = 0

    def committed(self, committing: float, done: float) -> None:
        """The order's transaction committed between `committing` and `done`: its lock, if any, is released."""
        granted = getattr(self._local, "granted", None)
        with self._mutex:
            self.orders += 1
            self.commit += done - committing
            if granted is not None:
                self.hold += done - granted
                self.statements_held += self._local.held_statements
        self._local.granted = None

    def summary(self, seconds: float) -> dict[str, float]:
        """Milliseconds per order, and the share of the run that the lock's serial holds add up to."""
        orders = max(1, self.orders)
        return {
            "lock_wait": round(1000 * self.lock_wait / orders, 2),
            "lock_hold": round(1000 * self.hold / orders, 2),
            "commit": round(1000 * self.commit / orders, 2),
            "statements_under_lock": round(self.statements_held / orders, 1),
            "holds_share_of_run": round(self.hold / seconds, 2),
        }
