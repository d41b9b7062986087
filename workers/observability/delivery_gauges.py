"""The outbox as `flowfleet exporter` publishes it: each downstream system's backlog, pause, breaker and mismatches.

Every known system gets a value on every scrape (0 when it has nothing), so the alerts over these
gauges resolve when the backlog drains instead of going stale. Read with grouped SELECTs only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import Connection

from workers.store.outbox.backlog import SystemBacklog, backlog
from workers.store.outbox.controls import Control, read_controls
from workers.store.outbox.unconfirmed import REASONS, unconfirmed_counts


def read_delivery_gauges(
    connection: Connection, *, now: datetime, objectives: Mapping[str, timedelta], systems: Sequence[str]
) -> list[Metric]:
    """Read the outbox and the controls, and turn them into gauges."""
    return delivery_gauges(
        backlog(connection, now=now, objectives=objectives),
        read_controls(connection),
        unconfirmed_counts(connection, now=now, objectives=objectives),
        now=now,
        objectives=objectives,
        systems=systems,
    )


def delivery_gauges(
    stats: Mapping[str, SystemBacklog],
    controls: Mapping[str, Control],
    unconfirmed: Mapping[tuple[str, str], int],
    *,
    now: datetime,
    objectives: Mapping[str, timedelta],
    systems: Sequence[str],
) -> list[Metric]:
    pending = GaugeMetricFamily(
        "flowfleet_deliveries_pending",
        "Deliveries recorded with their effects and not yet confirmed by the system (waiting, retrying, paused).",
        labels=["system"],
    )
    oldest = GaugeMetricFamily(
        "flowfleet_delivery_oldest_pending_seconds",
        "Age of the system's oldest pending delivery, from its effect's commit; 0 when none is pending.",
        labels=["system"],
    )
    objective = GaugeMetricFamily(
        "flowfleet_delivery_objective_seconds",
        "How long the system's deliveries may stay pending (FLOWFLEET_<SYSTEM>_DELIVERY_OBJECTIVE_SECONDS).",
        labels=["system"],
    )
    in_flight = GaugeMetricFamily(
        "flowfleet_deliveries_in_flight",
        "Pending deliveries a relay holds a live lease on: their request is out.",
        labels=["system"],
    )
    mismatches = GaugeMetricFamily(
        "flowfleet_deliveries_unconfirmed",
        "Effects applied here the system has not confirmed, as `flowfleet reconcile` reports them: overdue and "
        "dead_lettered whatever their age, discarded for 24 h after the discard.",
        labels=["system", "reason"],
    )
    paused = GaugeMetricFamily(
        "flowfleet_downstream_paused", "1 while an operator has paused the system's deliveries.", labels=["system"]
    )
    paused_since = GaugeMetricFamily(
        "flowfleet_downstream_paused_since_timestamp_seconds",
        "When the current pause began (Unix time); 0 when the system is not paused.",
        labels=["system"],
    )
    paused_until = GaugeMetricFamily(
        "flowfleet_downstream_paused_until_timestamp_seconds",
        "When the operator planned to resume (`--until`, Unix time); 0 when not paused or no end was planned.",
        labels=["system"],
    )
    circuit_open = GaugeMetricFamily(
        "flowfleet_downstream_circuit_open",
        "1 while the system's circuit breaker is open or probing: the relays do not claim its deliveries.",
        labels=["system"],
    )
    known = sorted({*systems, *stats, *controls, *(system for system, _reason in unconfirmed)})
    for system in known:
        found = stats.get(system) or SystemBacklog(system)
        control = controls.get(system) or Control.idle(system)
        pending.add_metric([system], float(found.pending))
        oldest.add_metric([system], found.oldest_pending_seconds(now))
        in_flight.add_metric([system], float(found.in_flight))
        if system in objectives:
            objective.add_metric([system], objectives[system].total_seconds())
        for reason in REASONS:
            mismatches.add_metric([system, reason], float(unconfirmed.get((system, reason), 0)))
        paused.add_metric([system], 1.0 if control.paused else 0.0)
        since = control.paused_since if control.paused else None
        until = control.paused_until if control.paused else None
        paused_since.add_metric([system], since.timestamp() if since else 0.0)
        paused_until.add_metric([system], until.timestamp() if until else 0.0)
        circuit_open.add_metric([system], 1.0 if control.circuit_open else 0.0)
    return [pending, oldest, objective, in_flight, mismatches, paused, paused_since, paused_until, circuit_open]
