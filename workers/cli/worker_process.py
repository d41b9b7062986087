"""`flowfleet worker`: migrate, declare the topology, then run the flows' actors, the delivery relay and the drain.

`--relay-only` runs the relay alone (to size it apart from the flows), `--no-relay` the flows without it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pika
from dramatiq import Worker
from sqlalchemy import Engine

from workers.cli.parent_watch import watch_parent
from workers.cli.stopping import stop_on_signals
from workers.deadletters.drain import ArchiveDrain
from workers.delivery.http import HttpDownstream
from workers.fleet import Fleet, http_downstream, middleware, register_actors, topology
from workers.fleet import relay as build_relay
from workers.flows import FLOWS
from workers.flows.flow import Flow
from workers.messaging.broker import FleetBroker
from workers.messaging.topology import Topology, apply, connection_parameters
from workers.observability.logs import configure_logging
from workers.observability.metrics import Outcomes
from workers.observability.metrics_endpoint import serve_worker_metrics
from workers.observability.scrubbing import secret_values
from workers.observability.sentry import init_sentry
from workers.settings import ConfigurationError, Settings, redact_url
from workers.store.db import make_engine, migrate

logger = logging.getLogger("flowfleet.worker")


def run_worker(  # one keyword per command-line switch
    settings: Settings,
    *,
    flows: list[str] | None,
    threads: int | None,
    drain: bool,
    relay: bool = True,
    relay_only: bool = False,
) -> int:
    """Run until SIGTERM or SIGINT; finish in-flight messages and requests, then exit 0."""
    configure_logging(json=settings.log_format == "json", level=settings.log_level, secrets=secret_values(settings))
    watch_parent(logger)
    init_sentry(settings)  # before any broker exists: its Dramatiq integration hooks Broker.__init__
    chosen = tuple(f for f in FLOWS if not flows or f.name in flows)
    unknown = set(flows or ()) - {f.name for f in FLOWS}
    if unknown:
        raise ConfigurationError(f"unknown flow(s): {', '.join(sorted(unknown))}")
    metrics = serve_worker_metrics(settings.metrics_port)  # first: a taken port fails start-up before anything runs
    try:
        return _run_fleet(settings, chosen, drain=drain, relay=relay, relay_only=relay_only, threads=threads)
    finally:
        metrics.close()


def _run_fleet(  # the switches of run_worker, once the metrics are served
    settings: Settings,
    chosen: tuple[Flow, ...],
    *,
    threads: int | None,
    drain: bool,
    relay: bool,
    relay_only: bool,
) -> int:
    downstream = http_downstream(settings, chosen)
    broker_url = settings.broker_url.get_secret_value()
    # Every worker thread holds a connection through its message, each relay thread one per claim or
    # settle, the drain and the relay's control reads one more: kept open, none is reconnected per use.
    in_use = (threads or settings.worker_threads) + settings.relay_concurrency * len(downstream) + 2
    engine = make_engine(settings.database_url.get_secret_value(), pool_size=in_use)
    migrate(engine)
    if relay_only:
        return _run_relay_only(settings, engine, downstream)
    plan = topology(settings, chosen)
    declare_topology(settings, plan)
    outcomes = Outcomes()
    broker = FleetBroker(broker_url, middleware=middleware(settings, outcomes))
    fleet = Fleet(
        settings=settings,
        broker=broker,
        engine=engine,
        downstream=downstream,
        outcomes=outcomes,
        flows=chosen,
    )
    register_actors(fleet)
    sender = build_relay(settings, engine, downstream, fleet.wakeup) if relay else None
    worker = Worker(broker, worker_threads=threads or settings.worker_threads, worker_timeout=1000)
    worker.queue_prefetch = settings.prefetch
    worker.delay_prefetch = max(settings.prefetch, 1000)
    archive_drain = (
        ArchiveDrain(
            connection_parameters(broker_url),
            fleet.dead_letter_queues(),
            engine,
            plan.delivery_limits(),
            parked_limit=timedelta(seconds=settings.parked_limit_seconds),
            flow_queues={flow.name: settings.queue_name(flow.name) for flow in chosen},
        )
        if drain
        else None
    )

    stopping = stop_on_signals(logger, "finishing in-flight messages")
    logger.info(
        "worker starting: flows=%s broker=%s threads=%d prefetch=%d relay=%s",
        ",".join(f.name for f in chosen),
        redact_url(broker_url),
        worker.worker_threads,
        settings.prefetch,
        "on" if sender else "off",
    )
    worker.start()
    if sender is not None:
        sender.start()
    if archive_drain is not None:
        archive_drain.start()
    stopping.wait()
    worker.stop()
    if sender is not None:
        sender.stop()
    if archive_drain is not None:
        archive_drain.stop()
        archive_drain.join(timeout=10)
    broker.close()
    for adapter in downstream.values():
        adapter.close()
    engine.dispose()
    logger.info("worker stopped")
    return 0


def _run_relay_only(settings: Settings, engine: Engine, downstream: dict[str, HttpDownstream]) -> int:
    """Only the relay: it sends what any worker recorded, found by its periodic sweep."""
    stopping = stop_on_signals(logger, "finishing in-flight requests")
    sender = build_relay(settings, engine, downstream)
    logger.info("relay starting: systems=%s", ",".join(sorted(downstream)))
    sender.start()
    stopping.wait()
    sender.stop()
    for adapter in downstream.values():
        adapter.close()
    engine.dispose()
    logger.info("relay stopped")
    return 0


def declare_topology(settings: Settings, plan: Topology) -> None:
    """Declare exchange, queues and bindings before consuming: a missing queue must never swallow messages."""
    connection = pika.BlockingConnection(connection_parameters(settings.broker_url.get_secret_value()))
    try:
        apply(connection.channel(), plan)
    finally:
        connection.close()
