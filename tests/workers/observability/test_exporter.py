"""`flowfleet exporter` reports queues from the broker and dead letters and replays from the archive, read-only."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, inspect

from handlers.errors import PermanentError
from tests.support.envelopes import envelope, order_v2
from workers.cli.main import main
from workers.failures import classify
from workers.messaging.dead_letters import archive_record, dead_letter_headers, dead_letter_id
from workers.observability.exporter import FleetExporter, watched_queues
from workers.settings import Settings
from workers.store.archive.records import archive
from workers.store.db import make_engine
from workers.store.tables import dead_letter_actions, dead_letter_replays

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Broker:
    """The management API's answer, as a dict; raises `error` instead when it is set."""

    def __init__(self, stats: dict[str, dict[str, int]] | None = None) -> None:
        self.stats = stats or {}
        self.error: Exception | None = None
        self.vhosts: list[str] = []

    def queue_stats(self, vhost: str) -> dict[str, dict[str, int]]:
        self.vhosts.append(vhost)
        if self.error is not None:
            raise self.error
        return self.stats


def scrape(engine: Engine, broker: Broker, settings: Settings | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(
        FleetExporter(
            queues=watched_queues(settings or Settings()),
            broker=broker,
            vhost="shop",
            engine=engine,
            clock=lambda: NOW,
        )
    )
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def dead_letter(
    engine: Engine,
    *,
    flow: str = "orders",
    fingerprint: str = "fp-erp-400",
    archived: timedelta = timedelta(minutes=5),
    status: str = "open",
    stage: str = "handler",
) -> int:
    """Archive one dead letter that was dead-lettered and archived `archived` before NOW."""
    body = envelope(order_v2(f"ORD-{uuid.uuid4().hex[:6]}"))
    headers = dead_letter_headers(
        classify(PermanentError("erp POST /orders answered 400")),
        dead_letter_id=dead_letter_id(flow, body),
        event={},
        original_headers={},
        attempts=1,
        delivery_count=0,
        first_failed_ms=0,
        last_failed_ms=0,
    )
    at = NOW - archived
    record = archive_record(flow, f"{flow}.XQ", headers, body) | {
        "fingerprint": fingerprint,
        "first_failed_at": at,
        "last_failed_at": at,
        "archived_at": at,
        "status": status,
        "stage": stage,
    }
    with engine.begin() as connection:
        new_id = archive(connection, record)
    assert new_id is not None
    return new_id


def test_every_flow_queue_its_delay_queue_and_its_dead_letter_queue_are_reported(engine: Engine) -> None:
    broker = Broker(
        {
            "orders": {"messages_ready": 1200, "messages_unacknowledged": 80, "consumers": 3},
            "orders.DQ": {"messages_ready": 0, "messages_unacknowledged": 15, "consumers": 3},
            "orders.XQ": {"messages_ready": 2, "messages_unacknowledged": 0, "consumers": 0},
            "payments": {"consumers": 0},  # declared a moment ago: no message statistics yet
            "someone-elses-queue": {"messages_ready": 5, "messages_unacknowledged": 0, "consumers": 1},
        }
    )

    registry = scrape(engine, broker)

    assert value(registry, "flowfleet_queue_messages", queue="orders", state="ready") == 1200
    assert broker.vhosts[0] == "shop"
    assert value(registry, "flowfleet_queue_messages", queue="orders", state="unacked") == 80
    assert value(registry, "flowfleet_queue_messages", queue="orders.DQ", state="unacked") == 15
    assert value(registry, "flowfleet_queue_messages", queue="orders.XQ", state="ready") == 2
    assert value(registry, "flowfleet_queue_consumers", queue="orders") == 3
    assert value(registry, "flowfleet_queue_consumers", queue="payments") == 0
    assert value(registry, "flowfleet_queue_messages", queue="payments", state="ready") is None
    assert value(registry, "flowfleet_queue_consumers", queue="someone-elses-queue") is None
    assert value(registry, "flowfleet_queue_info", queue="orders.DQ", flow="orders", role="delay") == 1
    assert value(registry, "flowfleet_queue_info", queue="catalog.XQ", flow="catalog", role="dead_letter") == 1
    assert value(registry, "flowfleet_exporter_up", source="broker") == 1


def test_queue_names_carry_the_queue_prefix(engine: Engine) -> None:
    broker = Broker({"t1-returns": {"messages_ready": 7, "messages_unacknowledged": 0, "consumers": 1}})

    registry = scrape(engine, broker, Settings(queue_prefix="t1-"))

    assert value(registry, "flowfleet_queue_messages", queue="t1-returns", state="ready") == 7
    assert value(registry, "flowfleet_queue_info", queue="t1-returns", flow="returns", role="work") == 1


def test_open_dead_letters_are_counted_per_flow_and_stage_with_a_zero_for_the_others(engine: Engine) -> None:
    dead_letter(engine, flow="orders", stage="handler")
    dead_letter(engine, flow="orders", stage="handler")
    dead_letter(engine, flow="orders", stage="contract", fingerprint="fp-quantity")
    dead_letter(engine, flow="orders", stage="handler", status="discarded")
    dead_letter(engine, flow="payments", stage="handler", status="resolved")

    registry = scrape(engine, Broker())

    assert value(registry, "flowfleet_dead_letters_open", flow="orders", stage="handler") == 2
    assert value(registry, "flowfleet_dead_letters_open", flow="orders", stage="contract") == 1
    assert value(registry, "flowfleet_dead_letters_open", flow="payments", stage="handler") == 0
    assert value(registry, "flowfleet_dead_letters_open", flow="catalog", stage="decode") == 0
    assert value(registry, "flowfleet_exporter_up", source="archive") == 1


def test_the_oldest_open_dead_letter_is_aged_from_when_it_was_dead_lettered(engine: Engine) -> None:
    dead_letter(engine, flow="returns", archived=timedelta(hours=30), status="resolved")
    dead_letter(engine, flow="returns", archived=timedelta(hours=5))
    dead_letter(engine, flow="returns", archived=timedelta(minutes=1))

    registry = scrape(engine, Broker())

    assert value(registry, "flowfleet_dead_letter_oldest_seconds", flow="returns") == 5 * 3600
    assert value(registry, "flowfleet_dead_letter_oldest_seconds", flow="orders") == 0


def test_a_fingerprint_is_new_for_an_hour_after_the_archive_first_received_it_for_the_flow(engine: Engine) -> None:
    dead_letter(engine, flow="orders", fingerprint="known", archived=timedelta(days=3), status="resolved")
    dead_letter(engine, flow="orders", fingerprint="known", archived=timedelta(minutes=2))
    dead_letter(engine, flow="orders", fingerprint="fresh", archived=timedelta(minutes=20))
    dead_letter(engine, flow="orders", fingerprint="fresh", archived=timedelta(minutes=2))
    dead_letter(engine, flow="orders", fingerprint="other-fresh", archived=timedelta(minutes=30), stage="contract")
    dead_letter(engine, flow="payments", fingerprint="known", archived=timedelta(minutes=2))
    dead_letter(engine, flow="catalog", fingerprint="stale", archived=timedelta(hours=2))

    registry = scrape(engine, Broker())

    assert value(registry, "flowfleet_dead_letter_new_fingerprints", flow="orders", stage="handler") == 1
    assert value(registry, "flowfleet_dead_letter_new_fingerprints", flow="orders", stage="contract") == 1
    assert value(registry, "flowfleet_dead_letter_new_fingerprints", flow="payments", stage="handler") == 1
    assert value(registry, "flowfleet_dead_letter_new_fingerprints", flow="catalog", stage="handler") == 0


def _replay(engine: Engine, dead_letter_ids: list[int], *, published: timedelta | None, outcome: str) -> None:
    with engine.begin() as connection:
        action_id = connection.execute(
            dead_letter_actions.insert()
            .values(
                kind="replay",
                actor="ana",
                reason="ERP is back",
                started_at=NOW - timedelta(hours=1),
                status="finished",
                selection={},
                options={},
                counts={},
            )
            .returning(dead_letter_actions.c.id)
        ).scalar_one()
        for dead_letter_id_ in dead_letter_ids:
            connection.execute(
                dead_letter_replays.insert().values(
                    action_id=action_id,
                    dead_letter_id=dead_letter_id_,
                    claimed_at=NOW - timedelta(hours=1),
                    published_at=None if published is None else NOW - published,
                    outcome=outcome,
                )
            )


def test_replayed_copies_the_broker_took_without_an_outcome_yet_are_pending(engine: Engine) -> None:
    returns = [dead_letter(engine, flow="returns", status="replayed") for _ in range(3)]
    orders = [dead_letter(engine, flow="orders", status="replayed") for _ in range(2)]
    _replay(engine, returns[:2], published=timedelta(minutes=40), outcome="pending")
    _replay(engine, returns[2:], published=timedelta(minutes=3), outcome="pending")
    _replay(engine, orders[:1], published=timedelta(minutes=50), outcome="applied")
    _replay(engine, orders[1:], published=None, outcome="pending")  # claimed, never confirmed: the replay resumes it

    registry = scrape(engine, Broker())

    assert value(registry, "flowfleet_replay_pending", flow="returns") == 3
    assert value(registry, "flowfleet_replay_oldest_pending_seconds", flow="returns") == 40 * 60
    assert value(registry, "flowfleet_replay_pending", flow="orders") == 0
    assert value(registry, "flowfleet_replay_oldest_pending_seconds", flow="orders") == 0
    assert value(registry, "flowfleet_exporter_up", source="replays") == 1


def test_a_broker_that_does_not_answer_leaves_the_archive_metrics_and_is_logged_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    dead_letter(engine, flow="orders")
    broker = Broker()
    broker.error = httpx.ConnectError("connection refused")
    registry = scrape(engine, broker)

    with caplog.at_level(logging.INFO, logger="flowfleet.exporter"):
        registry.collect()
        assert value(registry, "flowfleet_exporter_up", source="broker") == 0
        assert value(registry, "flowfleet_queue_info", queue="orders", flow="orders", role="work") is None
        assert value(registry, "flowfleet_dead_letters_open", flow="orders", stage="handler") == 1
        broker.error = None
        assert value(registry, "flowfleet_exporter_up", source="broker") == 1

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["cannot read the broker: ConnectError: connection refused", "reading the broker again"]


def test_an_archive_without_a_schema_is_reported_down_and_never_migrated(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        registry = scrape(engine, Broker({"orders": {"messages_ready": 1, "consumers": 1}}))

        assert value(registry, "flowfleet_exporter_up", source="archive") == 0
        assert value(registry, "flowfleet_exporter_up", source="replays") == 0
        assert value(registry, "flowfleet_queue_messages", queue="orders", state="ready") == 1
        assert value(registry, "flowfleet_dead_letters_open", flow="orders", stage="handler") is None
        assert inspect(engine).get_table_names() == [], "the exporter created tables"
    finally:
        engine.dispose()


def test_the_exporter_refuses_to_start_without_a_port_or_a_management_api(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exporter"]) == 2
    assert "set FLOWFLEET_METRICS_PORT or pass --port" in capsys.readouterr().err

    assert main(["exporter", "--port", "9300"]) == 2
    assert "set FLOWFLEET_MANAGEMENT_URL" in capsys.readouterr().err

    monkeypatch.setenv("FLOWFLEET_METRICS_PORT", "9300")
    assert main(["exporter"]) == 2
    assert "set FLOWFLEET_MANAGEMENT_URL" in capsys.readouterr().err
