"""Which threads hold a database connection right now: lets a fake downstream refuse a request made inside one."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sqlalchemy import Engine, event


class ConnectionsInUse:
    """Counts the pool connections each thread has checked out of `engine` (a transaction needs one)."""

    def __init__(self, engine: Engine) -> None:
        self._held: Counter[int] = Counter()
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def held_by_this_thread(self) -> int:
        with self._lock:
            return self._held[threading.get_ident()]

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info["flowfleet_thread"] = threading.get_ident()
        with self._lock:
            self._held[threading.get_ident()] += 1

    def _checkin(self, _dbapi: Any, record: Any) -> None:
        thread = record.info.pop("flowfleet_thread", None)
        if thread is not None:
            with self._lock:
                self._held[thread] -= 1
