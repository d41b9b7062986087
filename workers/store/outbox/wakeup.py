"""The nudge from a commit that recorded deliveries to this process's relay (no LISTEN/NOTIFY at commit)."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class _Nudges:
    """One system's waiters and the count of nudges it was given."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.generation = 0


class DeliveriesRecorded:
    """Notified by the pipeline after a commit that recorded deliveries; relay threads wait on it between sweeps.

    A nudge wakes ONE waiting thread per system: one claim picks up a commit's deliveries, and a relay with
    four threads for each of four systems would otherwise run sixteen claims per message, most of them empty.
    A thread that claimed a full batch nudges a sibling itself. A waiter passes the `generation` it saw before
    its last claim, so a nudge that came meanwhile is not missed; `wake_all` is for stopping.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._systems: dict[str, _Nudges] = {}

    def _nudges(self, system: str) -> _Nudges:
        with self._lock:
            return self._systems.setdefault(system, _Nudges())

    def generation(self, system: str) -> int:
        nudges = self._nudges(system)
        with nudges.condition:
            return nudges.generation

    def notify(self, systems: Iterable[str] | None = None) -> None:
        """Wake one waiting thread of each of `systems` (default: every system that has waiters)."""
        if systems is None:
            with self._lock:
                chosen = list(self._systems.values())
        else:
            chosen = [self._nudges(system) for system in systems]
        for nudges in chosen:
            with nudges.condition:
                nudges.generation += 1
                nudges.condition.notify(1)

    def wake_all(self) -> None:
        """Wake every waiting thread of every system (the relay is stopping)."""
        with self._lock:
            every = list(self._systems.values())
        for nudges in every:
            with nudges.condition:
                nudges.generation += 1
                nudges.condition.notify_all()

    def wait(self, system: str, timeout: float, seen: int | None = None) -> bool:
        """Wait up to `timeout` s for a nudge of `system` after generation `seen` (default: now); say whether
        one came."""
        nudges = self._nudges(system)
        with nudges.condition:
            start = nudges.generation if seen is None else seen
            return nudges.condition.wait_for(lambda: nudges.generation != start, timeout)
