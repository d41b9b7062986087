"""`flowfleet exporter`: what no worker can count: queue depth from the broker, dead letters and the outbox from SQL.

It collects on each scrape (a custom Collector) rather than on a timer: every value is as fresh as
the scrape that reads it, an idle exporter costs nothing, and the scrape interval set in Prometheus
is the only knob. A scrape costs one management API request and a few grouped SELECTs; a source
that fails is reported as `flowfleet_exporter_up{source} 0` and its metrics are left out of that
scrape, so one broken source never hides the other. It never writes to the database and never
migrates it (a missing schema is reported like any other failure of the archive).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from workers.failures import STAGES
from workers.flows import FLOWS
from workers.messaging.topology import DEAD_LETTER_SUFFIX, DELAY_SUFFIX
from workers.observability.delivery_gauges import read_delivery_gauges
from workers.settings import DOWNSTREAM_SYSTEMS, Settings
from workers.store.archive.parking import parked_counts
from workers.store.archive.stats import ArchiveStats, ReplayStats, archive_stats, replay_stats

logger = logging.getLogger("flowfleet.exporter")

#: A failure fingerprint counts as new for this long after the archive first received it.
NEW_FINGERPRINT_WINDOW = timedelta(hours=1)
#: The broker's words for a queue's messages, and ours (`state` label values).
QUEUE_STATES = (("messages_ready", "ready"), ("messages_unacknowledged", "unacked"))
FLOW_NAMES = tuple(flow.name for flow in FLOWS)


@dataclass(frozen=True)
class WatchedQueue:
    """One queue the exporter reports: its name, the flow it belongs to, and its role in the flow."""

    name: str
    flow: str
    role: str  # "work" | "delay" | "dead_letter"


def watched_queues(settings: Settings, flows: Sequence[str] = FLOW_NAMES) -> list[WatchedQueue]:
    """Every flow's work queue, its delay queue (`.DQ`) and its dead-letter queue (`.XQ`)."""
    queues: list[WatchedQueue] = []
    for flow in flows:
        name = settings.queue_name(flow)
        queues += [
            WatchedQueue(name, flow, "work"),
            WatchedQueue(name + DELAY_SUFFIX, flow, "delay"),
            WatchedQueue(name + DEAD_LETTER_SUFFIX, flow, "dead_letter"),
        ]
    return queues


class QueueStats(Protocol):
    """Where queue statistics come from (the management API; a dict in tests)."""

    def queue_stats(self, vhost: str) -> dict[str, dict[str, int]]: ...


class FleetExporter(Collector):
    """Collects broker and archive metrics when Prometheus scrapes; one scrape at a time."""

    def __init__(
        self,
        *,
        queues: Sequence[WatchedQueue],
        broker: QueueStats,
        vhost: str,
        engine: Engine,
        flows: Sequence[str] = FLOW_NAMES,
        objectives: Mapping[str, timedelta] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.queues = list(queues)
        #: Each downstream system's delivery objective (the settings' defaults unless given).
        self.objectives = dict(objectives or delivery_objectives(Settings()))
        self.broker = broker
        self.vhost = vhost
        self.engine = engine
        self.flows = list(flows)
        self.clock = clock
        self._lock = threading.Lock()
        self._healthy: dict[str, bool] = {}

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "flowfleet_exporter_up", "1 when the exporter could read the source on this scrape.", labels=["source"]
        )
        took = GaugeMetricFamily(
            "flowfleet_exporter_collect_seconds", "How long reading the source took on this scrape.", labels=["source"]
        )
        sources = (
            ("broker", self._broker_metrics),
            ("archive", self._archive_metrics),
            ("replays", self._replays),
            ("outbox", self._outbox),
        )
        for source, read in sources:
            started = time.perf_counter()
            try:
                metrics = list(read())
            except Exception as error:  # any failure of one source must leave the other's metrics
                metrics = []
                self._report(source, error)
            else:
                self._report(source, None)
            yield from metrics
            up.add_metric([source], 1.0 if self._healthy[source] else 0.0)
            took.add_metric([source], time.perf_counter() - started)
        yield up
        yield took

    def _report(self, source: str, error: Exception | None) -> None:
        """Log when a source starts or stops failing, not on every scrape."""
        healthy = error is None
        if self._healthy.get(source, True) and not healthy:
            logger.warning("cannot read the %s: %s: %s", source, type(error).__name__, str(error)[:300])
        elif not self._healthy.get(source, True) and healthy:
            logger.info("reading the %s again", source)
        self._healthy[source] = healthy

    def _broker_metrics(self) -> Iterator[Metric]:
        stats = self.broker.queue_stats(self.vhost)
        info = GaugeMetricFamily(
            "flowfleet_queue_info",
            "1 for each queue of a flow: maps the queue label to its flow and role (work, delay, dead_letter).",
            labels=["queue", "flow", "role"],
        )
        messages = GaugeMetricFamily(
            "flowfleet_queue_messages", "Messages in the queue, from the broker.", labels=["queue", "state"]
        )
        consumers = GaugeMetricFamily(
            "flowfleet_queue_consumers", "Consumers attached to the queue, from the broker.", labels=["queue"]
        )
        for queue in self.queues:
            info.add_metric([queue.name, queue.flow, queue.role], 1.0)
            found = stats.get(queue.name)
            if found is None:
                continue  # not declared (yet): `flowfleet topology check` says so
            for key, state in QUEUE_STATES:
                if key in found:
                    messages.add_metric([queue.name, state], float(found[key]))
            if "consumers" in found:
                consumers.add_metric([queue.name], float(found["consumers"]))
        yield from (info, messages, consumers)

    def _archive_metrics(self) -> Iterator[Metric]:
        now = self.clock()
        with self.engine.connect() as connection:
            stats = archive_stats(connection, now=now, new_window=NEW_FINGERPRINT_WINDOW)
            parked = parked_counts(connection)
        yield from archive_metrics(stats, now=now, flows=self.flows)
        yield parked_metric(parked, flows=self.flows)

    def _replays(self) -> Iterator[Metric]:
        now = self.clock()
        with self.engine.connect() as connection:
            stats = replay_stats(connection)
        yield from replay_metrics(stats, now=now, flows=self.flows)

    def _outbox(self) -> Iterator[Metric]:
        with self.engine.connect() as connection:
            yield from read_delivery_gauges(
                connection, now=self.clock(), objectives=self.objectives, systems=DOWNSTREAM_SYSTEMS
            )


def delivery_objectives(settings: Settings) -> dict[str, timedelta]:
    return {system: settings.delivery_objective(system) for system in DOWNSTREAM_SYSTEMS}


def archive_metrics(stats: ArchiveStats, *, now: datetime, flows: Sequence[str]) -> list[Metric]:
    """The archive's gauges, with a 0 for every known flow and stage that has none (so alerts can resolve)."""
    flow_names = sorted({*flows, *(f for f, _ in stats.open), *stats.oldest_open})
    stages = sorted({*STAGES, *(s for _, s in stats.open), *(s for _, s in stats.new_fingerprints)})
    open_family = GaugeMetricFamily(
        "flowfleet_dead_letters_open", "Dead letters in the archive with status open.", labels=["flow", "stage"]
    )
    oldest = GaugeMetricFamily(
        "flowfleet_dead_letter_oldest_seconds",
        "Age of the flow's oldest open dead letter, from when it was dead-lettered; 0 when none is open.",
        labels=["flow"],
    )
    new = GaugeMetricFamily(
        "flowfleet_dead_letter_new_fingerprints",
        "Distinct failure fingerprints the archive first received for this flow within the last hour.",
        labels=["flow", "stage"],
    )
    for flow in flow_names:
        since = stats.oldest_open.get(flow)
        oldest.add_metric([flow], max(0.0, (now - since).total_seconds()) if since else 0.0)
        for stage in stages:
            open_family.add_metric([flow, stage], float(stats.open.get((flow, stage), 0)))
            new.add_metric([flow, stage], float(stats.new_fingerprints.get((flow, stage), 0)))
    return [open_family, oldest, new]


def parked_metric(parked: Mapping[str, int], *, flows: Sequence[str]) -> Metric:
    """Events parked behind a dead letter they depend on, with a 0 for every flow that has none."""
    family = GaugeMetricFamily(
        "flowfleet_parked_events",
        "Events parked behind an open dead letter they depend on; released when it is applied.",
        labels=["flow"],
    )
    for flow in sorted({*flows, *parked}):
        family.add_metric([flow], float(parked.get(flow, 0)))
    return family


def replay_metrics(stats: ReplayStats, *, now: datetime, flows: Sequence[str]) -> list[Metric]:
    """Replayed copies still waiting for a worker's outcome, with a 0 for every flow that has none."""
    pending = GaugeMetricFamily(
        "flowfleet_replay_pending",
        "Replayed copies the broker confirmed whose outcome (applied, duplicate, failed again) is not known yet.",
        labels=["flow"],
    )
    oldest = GaugeMetricFamily(
        "flowfleet_replay_oldest_pending_seconds",
        "Time since the oldest of those copies was published; 0 when none is pending.",
        labels=["flow"],
    )
    for flow in sorted({*flows, *stats.pending}):
        since = stats.oldest_pending.get(flow)
        pending.add_metric([flow], float(stats.pending.get(flow, 0)))
        oldest.add_metric([flow], max(0.0, (now - since).total_seconds()) if since else 0.0)
    return [pending, oldest]
