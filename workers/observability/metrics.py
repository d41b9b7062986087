"""Prometheus metrics with the names and labels of DESIGN.md, and the per-message outcome recorder."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter as Tally
from collections.abc import Mapping
from datetime import UTC, datetime
from threading import Lock
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from contracts.published import REGISTRY
from workers.settings import DOWNSTREAM_SYSTEMS

#: prometheus-client writes its multiprocess files as soon as a metric is touched: a directory that
#: does not exist yet would make every command that counts something fail.
if multiprocess_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(multiprocess_dir, exist_ok=True)

logger = logging.getLogger("flowfleet.outcomes")

OUTCOMES = ("processed", "duplicate", "retried", "dead_lettered")

messages_total = Counter(
    "flowfleet_messages_total", "Messages handled, by outcome.", ["flow", "contract", "version", "outcome"]
)
handler_seconds = Histogram(
    "flowfleet_handler_seconds",
    "Time to apply one message (dedup claim, handler, commit).",
    ["flow"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
event_lag_seconds = Histogram(
    "flowfleet_event_lag_seconds",
    "From the event's occurred_at to the moment it was handled.",
    ["flow"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400),
)
stale_events_total = Counter(
    "flowfleet_stale_events_total",
    "Events handled but older than state already applied, so they changed nothing (counted as processed too).",
    ["flow", "contract"],
)
downstream_requests_total = Counter(
    "flowfleet_downstream_requests_total", "Requests to downstream systems, by result.", ["system", "result"]
)


class OutcomeRecorder(Protocol):
    """Where a message's outcome is counted: the failure policy reports retries and dead letters through it."""

    def record(self, options: Mapping[str, Any], outcome: str) -> None: ...


class Outcomes:
    """Counts each message's outcome in Prometheus, and keeps a tally for summaries (the demo)."""

    def __init__(self) -> None:
        self.tally: Tally[tuple[str, str]] = Tally()
        self._lock = Lock()
        # Label children resolved once per label set: `labels()` takes a lock and builds a key per call.
        self._counted: dict[tuple[str, str, str, str], Any] = {}
        self._timed: dict[str, tuple[Any, Any]] = {}

    def record(self, options: Mapping[str, Any], outcome: str) -> None:
        """Count one outcome of the message whose Dramatiq options are `options`."""
        event: Mapping[str, Any] = options.get("event", {})
        flow = str(options.get("flow", "unknown"))
        key = (flow, str(event.get("contract", "unknown")), str(event.get("version", "unknown")), outcome)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = messages_total.labels(*key)
        child.inc()
        with self._lock:
            self.tally[(flow, outcome)] += 1

    def stale(self, options: Mapping[str, Any], reason: str) -> None:
        """Count an event that was handled but changed nothing, being older than applied state."""
        event: Mapping[str, Any] = options.get("event", {})
        flow = str(options.get("flow", "unknown"))
        stale_events_total.labels(flow, str(event.get("contract", "unknown"))).inc()
        logger.info("stale %s event changed nothing: %s", flow, reason)
        with self._lock:
            self.tally[(flow, "stale")] += 1

    def handled(self, flow: str, started: float, occurred_at: datetime) -> None:
        """Time one applied or failed attempt: latency and lag must not go blank exactly during an outage."""
        children = self._timed.get(flow)
        if children is None:
            children = self._timed[flow] = (handler_seconds.labels(flow), event_lag_seconds.labels(flow))
        children[0].observe(time.perf_counter() - started)
        children[1].observe(max(0.0, (datetime.now(UTC) - occurred_at).total_seconds()))


#: Replayed dead letters by what became of them (`applied`, `duplicate`: already applied, `failed_again`),
#: counted by the workers that saw the outcome.
replays_total = Counter("flowfleet_replays_total", "Replayed dead letters, by what became of them.", ["flow", "result"])

#: What became of the deliveries the relay handled: confirmed, retried after a transient failure, throttled
#: (a 429 or the fleet-wide rate limit), dead-lettered (stage `delivery`), or superseded by a newer value.
#: What the relay did with a delivery it claimed: sent it (delivered), will try again (retried), was held back by a
#: 429 or the rate limit (throttled), gave up on it (dead_lettered), gave it back unsent (released: paused, breaker
#: open, shutting down), or found its lease taken over by another relay (lease_lost).
DELIVERY_RESULTS = ("delivered", "retried", "throttled", "dead_lettered", "released", "lease_lost")
deliveries_total = Counter(
    "flowfleet_deliveries_total", "Deliveries the relay handled, by system and result.", ["system", "result"]
)


def count_no_messages_yet() -> None:
    """Show every flow's known label sets at 0 from the start: `increase()` then sees a new label set's first
    burst whole (a first truncated body, the first failures after a restart), and panels show 0, not No data."""
    for contract in REGISTRY:
        for version in contract.versions:
            for outcome in OUTCOMES:
                messages_total.labels(contract.flow, contract.name, str(version), outcome)
    for flow in sorted({contract.flow for contract in REGISTRY}):
        for outcome in OUTCOMES:  # what failed before its contract was known: decode failures
            messages_total.labels(flow, "unknown", "unknown", outcome)
        handler_seconds.labels(flow)
        event_lag_seconds.labels(flow)


def count_no_deliveries_yet() -> None:
    """Show every system and result at 0 from the start, so rates and alerts over them exist before the first."""
    for system in DOWNSTREAM_SYSTEMS:
        for result in DELIVERY_RESULTS:
            deliveries_total.labels(system, result)
