"""Pause, resume, status, reconcile and the exporter's outbox gauges on real PostgreSQL, each command in a process."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select

from tests.support.deliveries import open_breaker, record_delivery
from workers.observability.exporter import FleetExporter, delivery_objectives, watched_queues
from workers.settings import Settings
from workers.store.db import make_engine, migrate
from workers.store.outbox import controls
from workers.store.outbox.status import DEAD_LETTERED, DELIVERED, SUPERSEDED
from workers.store.tables import dead_letter_actions

pytestmark = pytest.mark.integration

Flowfleet = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def engine(database: Any) -> Iterator[Engine]:
    """The test's PostgreSQL database, migrated as a worker would leave it."""
    engine = make_engine(database.url)
    migrate(engine)
    yield engine
    engine.dispose()


def actions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(dead_letter_actions)).scalar_one())


def test_a_pause_made_by_one_process_is_seen_by_the_next_and_resumed_by_a_third(
    engine: Engine, flowfleet: Flowfleet
) -> None:
    record_delivery(engine, now=datetime.now(UTC), age=timedelta(minutes=3))

    paused = flowfleet("downstream", "pause", "erp", "--reason", "ERP 4.2 (CHG-311)", "--until", "2h", "--actor", "ana")
    status = flowfleet("downstream", "status", "--json")
    resumed = flowfleet("downstream", "resume", "erp", "--reason", "done", "--actor", "bo", "--json")
    after = flowfleet("downstream", "status", "--system", "erp", "--json")

    assert paused.returncode == 0, paused.stderr
    systems = {report["system"]: report for report in json.loads(status.stdout)["systems"]}
    assert systems["erp"]["paused"]["by"] == "ana" and systems["erp"]["backlog"] == 1
    assert systems["channels"]["paused"] is None
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["done"] == "resumed"
    assert json.loads(after.stdout)["systems"][0]["paused"] is None
    assert actions(engine) == 2


def test_of_concurrent_pauses_of_one_system_one_pauses_the_others_update_it_and_every_try_is_audited(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def pause(actor: str) -> None:
        try:
            with engine.begin() as connection:
                outcomes.append(
                    controls.pause(connection, "erp", actor=actor, reason="window", until=None, now=now).outcome
                )
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=pause, args=(f"op{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sorted(outcomes) == [controls.PAUSED, controls.UPDATED, controls.UPDATED, controls.UPDATED]
    with engine.connect() as connection:
        assert controls.read_control(connection, "erp").paused
    assert actions(engine) == 4


def test_reconcile_on_postgresql_lists_mismatches_with_their_keys_and_exits_1(
    engine: Engine, flowfleet: Flowfleet
) -> None:
    now = datetime.now(UTC)
    record_delivery(
        engine,
        now=now,
        age=timedelta(hours=1),
        status=DEAD_LETTERED,
        contract="payment.refunded",
        business_keys={"refund_id": "REF-17", "payment_id": "PAY-9", "order_id": "ORD-9"},
        dead_letter_id=812,
    )
    record_delivery(engine, now=now, age=timedelta(minutes=20), business_keys={"order_id": "ORD-1"})
    record_delivery(engine, now=now, age=timedelta(minutes=20), system="notify")  # notify may wait an hour
    record_delivery(engine, now=now, age=timedelta(hours=1), status=SUPERSEDED, system="channels")
    record_delivery(engine, now=now, age=timedelta(hours=1), status=DELIVERED, finished_at=now)

    text = flowfleet("reconcile")
    report = flowfleet("reconcile", "--json")

    assert text.returncode == 1, text.stderr
    assert "refund REF-17 of payment PAY-9 recorded here, not posted to the ERP: dead letter 812" in text.stdout
    assert "order ORD-1 reserved here, not posted to the ERP: pending for 20 min" in text.stdout
    parsed = json.loads(report.stdout)
    assert parsed["mismatches"] == 2
    assert {item["reason"] for item in parsed["systems"]["erp"]} == {"dead_lettered", "overdue"}
    assert parsed["systems"]["notify"] == [] and parsed["systems"]["channels"] == []
    assert flowfleet("reconcile", "--system", "notify").returncode == 0


def test_the_exporter_reads_the_outbox_gauges_from_postgresql(engine: Engine) -> None:
    now = datetime.now(UTC)
    record_delivery(engine, now=now, age=timedelta(minutes=30))
    record_delivery(engine, now=now, age=timedelta(days=2), status=DEAD_LETTERED, system="payments")
    open_breaker(engine, "channels", opened_at=now)
    with engine.begin() as connection:
        controls.pause(connection, "notify", actor="ana", reason="window", until=now + timedelta(hours=1), now=now)
    settings = Settings()
    registry = CollectorRegistry()

    class NoBroker:
        def queue_stats(self, _vhost: str) -> dict[str, dict[str, int]]:
            return {}

    registry.register(
        FleetExporter(
            queues=watched_queues(settings),
            broker=NoBroker(),
            vhost="/",
            engine=engine,
            objectives=delivery_objectives(settings),
        )
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("flowfleet_exporter_up", source="outbox") == 1
    assert value("flowfleet_deliveries_pending", system="erp") == 1
    assert 30 * 60 <= (value("flowfleet_delivery_oldest_pending_seconds", system="erp") or 0) < 31 * 60
    assert value("flowfleet_deliveries_unconfirmed", system="erp", reason="overdue") == 1
    assert value("flowfleet_deliveries_unconfirmed", system="payments", reason="dead_lettered") == 1
    assert value("flowfleet_downstream_circuit_open", system="channels") == 1
    assert value("flowfleet_downstream_paused", system="notify") == 1
    assert value("flowfleet_downstream_paused_until_timestamp_seconds", system="notify") == pytest.approx(
        (now + timedelta(hours=1)).timestamp()
    )
