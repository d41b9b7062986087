"""The delivery relay: claims due deliveries, sends each outside any transaction, and records what happened.

Each system gets `concurrency` threads per process. A thread claims a batch (the head of each ordering key
only), sends them one by one with no connection checked out, and settles each in its own short transaction.
A delivery that waited in the batch until less than a request's worth of its lease is left is renewed
first, and skipped if another relay (or another thread of this one) took it over meanwhile: a delivery is
never sent twice at once.
It claims nothing for a paused system, nor while the system's breaker is open, except the one probe the
fleet sends after the cool-down. It sleeps until a commit in this process recorded deliveries (which wakes
one thread per system, workers.store.outbox.wakeup), or a sweep.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from handlers.downstream import Downstream
from workers.delivery.gate import ControlGate
from workers.delivery.sending import send
from workers.delivery.settle import RetryPolicy, Settler
from workers.observability.metrics import deliveries_total
from workers.store.outbox.claims import claim_due
from workers.store.outbox.outcomes import release, renew
from workers.store.outbox.purge import purge_finished
from workers.store.outbox.system_state import abandon_probe, take_probe
from workers.store.outbox.wakeup import DeliveriesRecorded

logger = logging.getLogger("flowfleet.delivery")


@dataclass(frozen=True)
class RelayOptions:
    """How hard the relay works and how long it waits."""

    concurrency: int = 4
    batch: int = 20
    lease: timedelta = timedelta(seconds=30)
    sweep_seconds: float = 1.0
    control_ttl_seconds: float = 1.0
    breaker_cooldown: timedelta = timedelta(seconds=30)
    retention: timedelta = timedelta(days=7)
    purge_every_seconds: float = 60.0


class Relay:
    """Sends the outbox's deliveries to `targets` (one adapter per system)."""

    def __init__(
        self,
        engine: Engine,
        targets: Mapping[str, Downstream],
        *,
        retry: RetryPolicy,
        options: RelayOptions | None = None,
        wakeup: DeliveriesRecorded | None = None,
    ) -> None:
        self.engine = engine
        self.targets = dict(targets)
        self.options = options or RelayOptions()
        self.wakeup = wakeup or DeliveriesRecorded()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]
        self.gate = ControlGate(engine, ttl=self.options.control_ttl_seconds)
        self.settler = Settler(engine, self.gate, retry, self.owner)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._purged_at = 0.0

    # -- running in the background (flowfleet worker) --------------------------------------------------

    def start(self) -> None:
        for system in sorted(self.targets):
            for n in range(self.options.concurrency):
                thread = threading.Thread(
                    target=self._loop, args=(system, n == 0), name=f"flowfleet-relay-{system}-{n}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        logger.info("delivery relay started: %s", ", ".join(sorted(self.targets)) or "no systems")

    def stop(self, timeout: float = 30.0) -> None:
        """Let in-flight requests finish, give unsent claims back, and wait for the threads."""
        self._stopping.set()
        self.wakeup.wake_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        self._threads = [t for t in self._threads if t.is_alive()]

    def _loop(self, system: str, housekeeper: bool) -> None:
        while not self._stopping.is_set():
            seen = self.wakeup.generation(system)
            try:
                worked = self.cycle(system)
                if worked >= self.options.batch:
                    self.wakeup.notify([system])  # a backlog: bring a sibling thread in
                if housekeeper:
                    self._housekeeping()
            except Exception:  # the database is away: sweep again later, never die
                logger.exception("delivery relay for %s: cycle failed; retrying in %.0f s", system, 1.0)
                worked = 0
            if not worked:
                self.wakeup.wait(system, self.options.sweep_seconds, seen)

    # -- one round ---------------------------------------------------------------------------------------

    def cycle(self, system: str) -> int:
        """Claim, send and settle one batch for `system`; return how many were settled."""
        if self.gate.paused(system):
            return 0
        limit, probing = self.options.batch, False
        if not self.gate.closed(system):
            with self.engine.begin() as connection:
                probing = take_probe(
                    connection,
                    system,
                    cooldown=self.options.breaker_cooldown,
                    probe_timeout=self.options.lease,
                    now=datetime.now(UTC),
                )
            if not probing:
                return 0
            self.gate.forget(system)
            limit = 1
            logger.info("circuit breaker for %s half-open: sending one probe", system)
        with self.engine.begin() as connection:
            rows = claim_due(
                connection, system, owner=self.owner, lease=self.options.lease, limit=limit, now=datetime.now(UTC)
            )
        if probing and not rows:
            self._reopen(system)
        settled = 0
        for index, row in enumerate(rows):
            if index and not self._may_go_on(system):
                self._release(system, [int(r["id"]) for r in rows[index:]])
                break
            if not self._still_held(row):
                continue
            sent = send(self.targets[system], row)  # no connection is checked out here
            self.settler.settle(row, sent)
            settled += 1
        return settled

    def drain(self, *, timeout: float = 60.0, quiet: float = 0.0, systems: tuple[str, ...] | None = None) -> int:
        """Run rounds in this thread until none had anything to send for `quiet` seconds (the demo, tests);
        return how many outcomes were recorded."""
        deadline = time.monotonic() + timeout
        total, idle_since = 0, None
        while time.monotonic() < deadline:
            worked = sum(self.cycle(system) for system in (systems or tuple(sorted(self.targets))))
            total += worked
            if worked:
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet:
                break
            time.sleep(0.01)
        return total

    def _may_go_on(self, system: str) -> bool:
        return not self._stopping.is_set() and not self.gate.paused(system) and self.gate.closed(system)

    def _still_held(self, row: dict[str, Any]) -> bool:
        """True when the lease outlasts one more request (renewing it if need be); False when it was lost."""
        now = datetime.now(UTC)
        if row["lease_expires_at"] - now >= self.options.lease * 0.75:
            return True
        with self.engine.begin() as connection:
            until = now + self.options.lease
            held = renew(connection, int(row["id"]), self.owner, held_until=row["lease_expires_at"], until=until)
        if held:
            row["lease_expires_at"] = until
        else:
            logger.info("delivery %s: lease taken over by another relay before it was sent; skipped", row["id"])
            deliveries_total.labels(row["system"], "lease_lost").inc()
        return held

    def _release(self, system: str, ids: list[int]) -> None:
        with self.engine.begin() as connection:
            released = release(connection, ids, self.owner)
        if released:
            deliveries_total.labels(system, "released").inc(released)

    def _reopen(self, system: str) -> None:
        with self.engine.begin() as connection:
            abandon_probe(connection, system)
        self.gate.forget(system)

    def _housekeeping(self) -> None:
        if time.monotonic() - self._purged_at < self.options.purge_every_seconds:
            return
        self._purged_at = time.monotonic()
        before = datetime.now(UTC) - self.options.retention
        with self.engine.begin() as connection:
            purged = purge_finished(connection, before=before)
        if purged:
            logger.info("purged %d delivered deliveries older than %s", purged, self.options.retention)
