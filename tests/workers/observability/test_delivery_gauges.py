"""`flowfleet exporter` publishes each downstream system's backlog, pause, breaker and mismatches, read-only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event

from tests.support.deliveries import open_breaker, record_delivery
from workers.observability.exporter import FleetExporter, watched_queues
from workers.settings import Settings
from workers.store.outbox import controls
from workers.store.outbox.status import DEAD_LETTERED, DELIVERED, DISCARDED, SUPERSEDED

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


class NoBroker:
    def queue_stats(self, _vhost: str) -> dict[str, dict[str, int]]:
        return {}


def scrape(engine: Engine, settings: Settings | None = None) -> CollectorRegistry:
    settings = settings or Settings()
    registry = CollectorRegistry()
    objectives = {system: settings.delivery_objective(system) for system in ("erp", "channels", "notify", "payments")}
    registry.register(
        FleetExporter(
            queues=watched_queues(settings),
            broker=NoBroker(),
            vhost="/",
            engine=engine,
            objectives=objectives,
            clock=lambda: NOW,
        )
    )
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_backlog_and_its_oldest_are_published_per_system_with_zeros_for_the_others(engine: Engine) -> None:
    record_delivery(engine, now=NOW, age=timedelta(minutes=40))
    record_delivery(
        engine, now=NOW, age=timedelta(minutes=2), lease_owner="w1", lease_expires_at=NOW + timedelta(seconds=20)
    )
    record_delivery(engine, now=NOW, age=timedelta(hours=2), status=DELIVERED, finished_at=NOW)
    record_delivery(engine, now=NOW, age=timedelta(hours=2), status=SUPERSEDED, system="channels")

    registry = scrape(engine)

    assert value(registry, "flowfleet_deliveries_pending", system="erp") == 2
    assert value(registry, "flowfleet_delivery_oldest_pending_seconds", system="erp") == 40 * 60
    assert value(registry, "flowfleet_deliveries_in_flight", system="erp") == 1
    assert value(registry, "flowfleet_deliveries_pending", system="channels") == 0
    assert value(registry, "flowfleet_delivery_oldest_pending_seconds", system="payments") == 0
    assert value(registry, "flowfleet_exporter_up", source="outbox") == 1


def test_each_systems_objective_comes_from_the_settings(engine: Engine) -> None:
    registry = scrape(engine, Settings(erp_delivery_objective_seconds=600))

    assert value(registry, "flowfleet_delivery_objective_seconds", system="erp") == 600
    assert value(registry, "flowfleet_delivery_objective_seconds", system="channels") == 5 * 60
    assert value(registry, "flowfleet_delivery_objective_seconds", system="notify") == 3600


def test_a_pause_is_published_with_its_start_and_its_planned_end(engine: Engine) -> None:
    until = NOW + timedelta(hours=2)
    with engine.begin() as connection:
        controls.pause(
            connection, "erp", actor="ana", reason="ERP upgrade 4.2", until=until, now=NOW - timedelta(minutes=5)
        )
        controls.pause(connection, "notify", actor="ana", reason="incident", until=None, now=NOW)

    registry = scrape(engine)

    assert value(registry, "flowfleet_downstream_paused", system="erp") == 1
    assert (
        value(registry, "flowfleet_downstream_paused_since_timestamp_seconds", system="erp")
        == (NOW - timedelta(minutes=5)).timestamp()
    )
    assert value(registry, "flowfleet_downstream_paused_until_timestamp_seconds", system="erp") == until.timestamp()
    assert value(registry, "flowfleet_downstream_paused_until_timestamp_seconds", system="notify") == 0
    assert value(registry, "flowfleet_downstream_paused", system="payments") == 0
    assert value(registry, "flowfleet_downstream_paused_since_timestamp_seconds", system="payments") == 0


def test_a_resumed_system_is_published_as_not_paused(engine: Engine) -> None:
    with engine.begin() as connection:
        controls.pause(connection, "erp", actor="ana", reason="window", until=NOW, now=NOW - timedelta(hours=1))
        controls.resume(connection, "erp", actor="ana", reason="done", now=NOW)

    registry = scrape(engine)

    assert value(registry, "flowfleet_downstream_paused", system="erp") == 0
    assert value(registry, "flowfleet_downstream_paused_until_timestamp_seconds", system="erp") == 0


def test_an_open_breaker_is_published_and_a_closed_one_is_zero(engine: Engine) -> None:
    open_breaker(engine, "channels", opened_at=NOW - timedelta(minutes=7))

    registry = scrape(engine)

    assert value(registry, "flowfleet_downstream_circuit_open", system="channels") == 1
    assert value(registry, "flowfleet_downstream_circuit_open", system="erp") == 0


def test_unconfirmed_deliveries_are_published_by_reason(engine: Engine) -> None:
    record_delivery(engine, now=NOW, age=timedelta(minutes=20))
    record_delivery(engine, now=NOW, age=timedelta(minutes=2))
    record_delivery(engine, now=NOW, age=timedelta(days=3), status=DEAD_LETTERED, system="payments")
    record_delivery(engine, now=NOW, age=timedelta(hours=5), status=DISCARDED, finished_at=NOW - timedelta(hours=1))

    registry = scrape(engine)

    assert value(registry, "flowfleet_deliveries_unconfirmed", system="erp", reason="overdue") == 1
    assert value(registry, "flowfleet_deliveries_unconfirmed", system="erp", reason="discarded") == 1
    assert value(registry, "flowfleet_deliveries_unconfirmed", system="payments", reason="dead_lettered") == 1
    assert value(registry, "flowfleet_deliveries_unconfirmed", system="notify", reason="overdue") == 0


def test_the_outbox_is_read_with_a_few_selects_and_never_written(engine: Engine) -> None:
    for age in range(30):
        record_delivery(engine, now=NOW, age=timedelta(minutes=age))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    registry = scrape(engine)
    statements.clear()

    registry.get_sample_value("flowfleet_deliveries_pending", {"system": "erp"})

    outbox = [s for s in statements if "deliveries" in s or "downstream_controls" in s]
    assert 0 < len(outbox) <= 6
    assert all(s.lstrip().upper().startswith("SELECT") for s in statements)
