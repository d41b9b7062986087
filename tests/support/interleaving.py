"""A rival transaction run at a chosen point of another one, to replay a race in one exact interleaving.

A test pauses its own transaction between a read and the write that follows it (by overriding the
book's write) and runs the rival there, on a connection of its own in a thread of its own. The rival
runs until it has committed, or until it waits for a lock the paused transaction holds; either way
the paused transaction then goes on, and the test looks at what the database let through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, text

T = TypeVar("T")


class Rival(Generic[T]):
    """`work` run in its own transaction (committed when it returns) in a thread of its own."""

    def __init__(self, engine: Engine, work: Callable[[Connection], T]) -> None:
        self.engine = engine
        self.work = work
        self.backend_pid: int | None = None
        self._started = threading.Event()
        self._result: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="rival-transaction", daemon=True)

    def _run(self) -> None:
        try:
            with self.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    self.backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    connection.commit()
                self._started.set()
                with connection.begin():
                    self._result.append(self.work(connection))
        except BaseException as error:  # handed to the test in finish()
            self._error.append(error)
        finally:
            self._started.set()

    def run_until_committed_or_blocked(self, timeout: float = 10.0) -> bool:
        """Start the rival; return True once it has committed, False once it waits for a lock (PostgreSQL)."""
        self._thread.start()
        self._started.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                return True
            if self._waits_for_a_lock():
                return False
            time.sleep(0.01)
        raise AssertionError(f"the rival transaction neither committed nor waited for a lock within {timeout:.0f} s")

    def finish(self, timeout: float = 10.0) -> T:
        """Wait for the rival to end; its result, or its exception raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the rival transaction did not end within {timeout:.0f} s")
        if self._error:
            raise self._error[0]
        return self._result[0]

    def _waits_for_a_lock(self) -> bool:
        if self.backend_pid is None:
            return False
        with self.engine.connect() as observer:
            query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
            return bool(observer.execute(query, {"pid": self.backend_pid}).scalar_one_or_none() == "Lock")
