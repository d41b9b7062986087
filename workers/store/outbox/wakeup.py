"""The nudge from a commit that recorded deliveries to this process's relay (no LISTEN/NOTIFY at commit)."""

from __future__ import annotations

import threading


class DeliveriesRecorded:
    """Notified by the pipeline after a commit that recorded deliveries; relay threads wait on it between sweeps.

    A waiter passes the `generation` it saw before its last claim, so a nudge that came meanwhile is not missed.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, timeout: float, seen: int | None = None) -> bool:
        """Wait up to `timeout` s for a nudge after generation `seen` (default: now); say whether one came."""
        with self._condition:
            start = self._generation if seen is None else seen
            return self._condition.wait_for(lambda: self._generation != start, timeout)
