"""Whether the relay may claim for a system: its pause and breaker, read from the database at most every second."""

from __future__ import annotations

import time
from collections.abc import Callable
from threading import Lock

from sqlalchemy import Engine

from workers.store.outbox.controls import BREAKER_CLOSED, Control, read_control


class ControlGate:
    """Caches each system's `downstream_controls` row for `ttl` seconds (a pause is seen within that)."""

    def __init__(self, engine: Engine, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.ttl = ttl
        self._clock = clock
        self._read: dict[str, tuple[float, Control]] = {}
        self._lock = Lock()

    def control(self, system: str) -> Control:
        now = self._clock()
        with self._lock:
            cached = self._read.get(system)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with self.engine.connect() as connection:
            control = read_control(connection, system)
        with self._lock:
            self._read[system] = (now, control)
        return control

    def forget(self, system: str) -> None:
        """Read again next time: this process just moved the breaker."""
        with self._lock:
            self._read.pop(system, None)

    def paused(self, system: str) -> bool:
        """Paused until an operator resumes: `--until` is the plan an alert watches, not a timer."""
        return self.control(system).paused

    def closed(self, system: str) -> bool:
        return self.control(system).breaker == BREAKER_CLOSED
