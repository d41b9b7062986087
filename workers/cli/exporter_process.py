"""`flowfleet exporter`: serves the exporter's collector (queue depth and the archive) until it is told to stop."""

from __future__ import annotations

import logging

import pika
from prometheus_client import CollectorRegistry, start_http_server

from workers.cli.stopping import stop_on_signals
from workers.messaging.management import ManagementApi
from workers.observability.exporter import FleetExporter, watched_queues
from workers.observability.logs import configure_logging
from workers.observability.scrubbing import secret_values
from workers.observability.sentry import init_sentry
from workers.settings import ConfigurationError, Settings, redact_url
from workers.store.db import make_engine

logger = logging.getLogger("flowfleet.exporter")


def run_exporter(settings: Settings, *, port: int | None) -> int:
    """Serve the exporter's metrics until SIGTERM or SIGINT, then exit 0."""
    configure_logging(json=settings.log_format == "json", level=settings.log_level, secrets=secret_values(settings))
    init_sentry(settings)  # errors of the exporter itself reach Sentry, scrubbed like the workers'
    port = port or settings.metrics_port
    if not port:
        raise ConfigurationError("set FLOWFLEET_METRICS_PORT or pass --port: the port to serve metrics on")
    if settings.management_url is None:
        raise ConfigurationError(
            "set FLOWFLEET_MANAGEMENT_URL to the RabbitMQ management API (e.g. http://user:pass@rabbitmq:15672): "
            "the exporter reads queue depth and consumers there"
        )
    management_url = settings.management_url.get_secret_value()
    broker_url = settings.broker_url.get_secret_value()
    management = ManagementApi(management_url)
    engine = make_engine(settings.database_url.get_secret_value())
    registry = CollectorRegistry()
    registry.register(
        FleetExporter(
            queues=watched_queues(settings),
            broker=management,
            vhost=pika.URLParameters(broker_url).virtual_host,
            engine=engine,
        )
    )
    stopping = stop_on_signals(logger, "stopping")
    server, _thread = start_http_server(port, registry=registry)
    logger.info(
        "exporter serving on port %d: broker %s via %s, archive %s",
        port,
        redact_url(broker_url),
        redact_url(management_url),
        redact_url(settings.database_url.get_secret_value()),
    )
    stopping.wait()
    server.shutdown()
    server.server_close()
    management.close()
    engine.dispose()
    logger.info("exporter stopped")
    return 0
