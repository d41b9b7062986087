"""The `flowfleet` command line as upstream teams and on-call use it: contracts, topology, dlq, demo."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from handlers.errors import PermanentError
from tests.support.envelopes import envelope, message_id_of, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun
from workers.demo import embedded as demo
from workers.failures import classify
from workers.messaging.dead_letters import archive_record, dead_letter_headers, dead_letter_id
from workers.store.archive.records import archive

SECRET_EMAIL = "ana.secret@example.com"
BROKEN_EMAIL = "broken.secret@example.com"


@pytest.fixture
def archived(fleet: FleetRun, faults: PortFaults) -> dict[str, dict[str, Any]]:
    """An archive filled by the pipeline: an order refused in its handler (with personal data) and a truncated body."""
    faults.responder = lambda *_: 400
    refused = envelope(order_v2("ORD-300", email=SECRET_EMAIL, name="Ana Geheimnis"), message_id="msg-refused-by-erp")
    truncated = b'{"message_id": "msg-cut", "data": {"customer": {"email": "' + BROKEN_EMAIL.encode() + b'"'
    fleet.run(refused, truncated)
    return {record["stage"]: record for record in fleet.dead_letters()}


def write_lines(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


# -- contracts --------------------------------------------------------------------------------------


def test_contracts_list_as_json_names_order_created_with_versions_one_and_two(cli: Cli) -> None:
    ran = cli("contracts", "list", "--json")

    assert ran.code == 0
    [row] = [row for row in ran.json() if row["contract"] == "order.created"]
    assert (row["flow"], row["versions"], row["latest"]) == ("orders", [1, 2], 2)
    assert "order_id" in row["summary"]


def test_contracts_schema_prints_the_json_schema_of_the_requested_version(cli: Cli) -> None:
    ran = cli("contracts", "schema", "order.created", "--version", "1")

    assert ran.code == 0
    schema = ran.json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "order.created v1"
    assert schema["properties"]["version"]["const"] == 1
    assert schema["properties"]["contract"]["const"] == "order.created"
    data = schema["properties"]["data"]
    assert {"order_id", "email", "items", "total_cents"} <= set(data["properties"])
    assert "lines" not in data["properties"]
    assert {"message_id", "occurred_at", "producer", "data"} <= set(schema["required"])


def test_contracts_schema_defaults_to_the_latest_version(cli: Cli) -> None:
    schema = cli("contracts", "schema", "order.created").json()

    assert schema["properties"]["version"]["const"] == 2
    assert "lines" in schema["properties"]["data"]["properties"]


def test_an_unknown_contract_exits_non_zero_and_names_it(cli: Cli) -> None:
    ran = cli("contracts", "schema", "order.nope")

    assert ran.code != 0
    assert ran.out == ""
    assert "unknown contract" in ran.err
    assert "order.nope" in ran.err


def test_an_unknown_contract_is_quoted_intact_in_the_error(cli: Cli) -> None:
    ran = cli("contracts", "schema", "order.nope")

    assert "unknown contract 'order.nope'" in ran.err


def test_an_unknown_version_exits_non_zero_and_says_which_versions_exist(cli: Cli) -> None:
    ran = cli("contracts", "schema", "order.created", "--version", "9")

    assert ran.code != 0
    assert "order.created has no version 9" in ran.err


# -- topology ---------------------------------------------------------------------------------------


def test_topology_export_prints_quorum_queues_with_delivery_limits_and_a_dead_letter_queue_without_ttl(
    cli: Cli,
) -> None:
    ran = cli("topology", "export")

    assert ran.code == 0
    definitions = ran.json()
    queues = {q["name"]: q for q in definitions["queues"]}
    flows = ("orders", "inventory", "payments", "fulfillment", "returns", "catalog")
    assert set(queues) == {f"{flow}{suffix}" for flow in flows for suffix in ("", ".DQ", ".XQ")}
    assert all(q["durable"] and q["arguments"]["x-queue-type"] == "quorum" for q in queues.values())
    assert queues["orders"]["arguments"]["x-delivery-limit"] == 5
    assert queues["orders.DQ"]["arguments"]["x-delivery-limit"] >= 5
    for work_queue in ("orders", "orders.DQ"):
        assert queues[work_queue]["arguments"]["x-dead-letter-routing-key"] == "orders.XQ"
        assert queues[work_queue]["arguments"]["x-dead-letter-strategy"] == "at-least-once"
    assert "x-message-ttl" not in queues["orders.XQ"]["arguments"]
    assert "x-expires" not in queues["orders.XQ"]["arguments"]
    [exchange] = definitions["exchanges"]
    assert (exchange["name"], exchange["type"], exchange["durable"]) == ("commerce.events", "topic", True)
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    assert ("commerce.events", "orders", "order.created") in bindings
    assert ("commerce.events", "orders", "order.cancelled") in bindings
    assert ("commerce.events", "payments", "payment.captured") in bindings
    assert ("commerce.events", "returns", "return.received") in bindings
    assert len(bindings) == 14


def test_topology_export_follows_the_exchange_prefix_and_delivery_limit_settings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWFLEET_EXCHANGE", "staging.events")
    monkeypatch.setenv("FLOWFLEET_QUEUE_PREFIX", "tenant-a.")
    monkeypatch.setenv("FLOWFLEET_DELIVERY_LIMIT", "7")

    definitions = cli("topology", "export").json()

    queues = {q["name"]: q for q in definitions["queues"]}
    assert {"tenant-a.orders", "tenant-a.orders.DQ", "tenant-a.orders.XQ", "tenant-a.catalog.XQ"} <= set(queues)
    assert all(name.startswith("tenant-a.") for name in queues)
    assert queues["tenant-a.orders"]["arguments"]["x-delivery-limit"] == 7
    assert definitions["exchanges"][0]["name"] == "staging.events"
    assert {b["source"] for b in definitions["bindings"]} == {"staging.events"}


# -- publish ----------------------------------------------------------------------------------------


def test_publish_dry_run_accepts_a_valid_json_lines_file(cli: Cli, tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", envelope(order_v2("ORD-400")), "", envelope(order_v2("ORD-401")))

    ran = cli("publish", str(events), "--dry-run")

    assert ran.code == 0, ran.err
    assert "2 envelope(s) would be published to commerce.events" in ran.out


def test_publish_rejects_a_file_with_a_malformed_line_naming_the_line_and_publishing_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "events.jsonl", envelope(order_v2("ORD-402")), "", '{"message_id": "m-1", "contr')

    ran = cli("publish", str(events), "--dry-run")

    assert ran.code != 0
    assert "line 3: not published" in ran.err
    assert "line 1:" not in ran.err
    assert "nothing was published" in ran.err
    assert "would be published" not in ran.out


def test_publish_checks_every_line_before_it_connects_to_the_broker(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWFLEET_BROKER_URL", "amqp://guest:hunter2@127.0.0.1:1/%2F")
    events = write_lines(tmp_path / "events.jsonl", "[1, 2]", envelope(order_v2("ORD-403")))

    started = time.monotonic()
    ran = cli("publish", str(events))

    assert ran.code != 0
    assert "line 1: not published" in ran.err
    assert "nothing was published" in ran.err
    assert "connect" not in ran.err and "broker" not in ran.err
    assert "hunter2" not in ran.err + ran.out
    assert time.monotonic() - started < 2


def test_publish_to_an_unreachable_broker_says_so_once_without_the_password(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWFLEET_BROKER_URL", "amqp://guest:hunter2@127.0.0.1:1/%2F")
    events = write_lines(tmp_path / "events.jsonl", envelope(order_v2("ORD-404")), envelope(order_v2("ORD-405")))

    ran = cli("publish", str(events))

    assert ran.code == 2
    assert (
        ran.err.strip()
        == "flowfleet: cannot reach the broker at amqp://guest:***@127.0.0.1:1/%2F: none of 2 envelope(s) was published"
    )
    assert "hunter2" not in ran.out + ran.err


# -- dlq --------------------------------------------------------------------------------------------


def test_dlq_list_as_json_lists_the_archived_dead_letters_with_stage_and_final_error(
    cli: Cli, archived: dict[str, dict[str, Any]]
) -> None:
    ran = cli("dlq", "list", "--json")

    assert ran.code == 0
    listing = ran.json()
    assert listing["total"] == 2
    items = {item["stage"]: item for item in listing["items"]}
    assert set(items) == {"handler", "decode"}
    refused = items["handler"]
    assert (refused["id"], refused["message_id"], refused["contract"]) == (
        archived["handler"]["id"],
        "msg-refused-by-erp",
        "order.created",
    )
    assert refused["attempts"] == 1
    assert "answered 400" in refused["error_message"]
    assert "not JSON" in items["decode"]["error_message"]
    assert SECRET_EMAIL not in ran.out and BROKEN_EMAIL not in ran.out


def test_dlq_list_filters_by_stage(cli: Cli, archived: dict[str, dict[str, Any]]) -> None:
    listing = cli("dlq", "list", "--stage", "decode", "--json").json()

    assert listing["total"] == 1
    assert [item["id"] for item in listing["items"]] == [archived["decode"]["id"]]


def test_dlq_list_as_text_shows_one_line_per_dead_letter(cli: Cli, archived: dict[str, dict[str, Any]]) -> None:
    ran = cli("dlq", "list")

    assert ran.code == 0
    assert "2 dead letter(s)" in ran.out
    assert f"#{archived['handler']['id']}" in ran.out and f"#{archived['decode']['id']}" in ran.out
    assert SECRET_EMAIL not in ran.out


def test_dlq_show_as_json_has_the_envelope_final_error_and_history_with_personal_data_masked(
    cli: Cli, archived: dict[str, dict[str, Any]]
) -> None:
    ran = cli("dlq", "show", str(archived["handler"]["id"]), "--json")

    assert ran.code == 0
    shown = ran.json()
    assert shown["envelope"]["data"]["order_id"] == "ORD-300"
    assert shown["envelope"]["message_id"] == "msg-refused-by-erp"
    assert (shown["stage"], shown["error_type"]) == ("handler", "PermanentError")
    assert "answered 400" in shown["error_message"]
    assert [event["action"] for event in shown["history"]] == ["archived"]
    assert shown["owner"]["team"] == "integration" and "#flowfleet-oncall" in shown["owner"]["contact"]
    assert shown["envelope"]["data"]["customer"]["email"] == "***"
    assert SECRET_EMAIL not in ran.out
    assert "Ana Geheimnis" not in ran.out


def test_dlq_show_unmask_reveals_the_personal_data(cli: Cli, archived: dict[str, dict[str, Any]]) -> None:
    ran = cli("dlq", "show", str(archived["handler"]["id"]), "--json", "--unmask")

    assert ran.code == 0
    customer = ran.json()["envelope"]["data"]["customer"]
    assert (customer["email"], customer["name"]) == (SECRET_EMAIL, "Ana Geheimnis")


def test_dlq_show_masks_emails_inside_a_body_that_is_not_json(cli: Cli, archived: dict[str, dict[str, Any]]) -> None:
    ran = cli("dlq", "show", str(archived["decode"]["id"]), "--json")

    assert ran.code == 0
    shown = ran.json()
    assert "envelope" not in shown
    assert shown["body"].startswith('{"message_id": "msg-cut"')
    assert BROKEN_EMAIL not in ran.out


def test_dlq_show_as_text_masks_personal_data_too(cli: Cli, archived: dict[str, dict[str, Any]]) -> None:
    ran = cli("dlq", "show", str(archived["handler"]["id"]))

    assert ran.code == 0
    assert "answered 400" in ran.out
    assert "archived" in ran.out
    assert "owner: integration team (flowfleet)" in ran.out
    assert SECRET_EMAIL not in ran.out and "Ana Geheimnis" not in ran.out


def test_dlq_show_of_an_unknown_id_exits_non_zero(cli: Cli, engine: Engine) -> None:
    ran = cli("dlq", "show", "999")

    assert ran.code != 0
    assert "no dead letter #999" in ran.err


def test_reading_an_unmigrated_database_says_to_upgrade_and_changes_nothing(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.db"
    monkeypatch.setenv("FLOWFLEET_DATABASE_URL", f"sqlite:///{empty}")

    ran = cli("dlq", "list")

    assert ran.code == 2
    assert "run `flowfleet db upgrade`" in ran.err
    with sqlite3.connect(empty) as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
    assert cli("db", "upgrade").code == 0
    assert cli("dlq", "list").code == 0


def _archive_directly(engine: Engine, body: bytes) -> int:
    """Archive a dead letter the way the drain does, without running the pipeline."""
    now_ms = int(time.time() * 1000)
    headers = dead_letter_headers(
        classify(PermanentError("erp POST /orders answered 400")),
        dead_letter_id=dead_letter_id("orders", body),
        event={},
        original_headers={},
        attempts=1,
        delivery_count=0,
        first_failed_ms=now_ms,
        last_failed_ms=now_ms,
    )
    with engine.begin() as connection:
        new_id = archive(connection, archive_record("orders", "orders.XQ", headers, body))
    assert new_id is not None
    return new_id


def test_dlq_show_masking_keeps_the_event_time_and_message_id_readable(cli: Cli, engine: Engine) -> None:
    body = envelope(order_v2("ORD-301"), message_id="0b7e2c9a-4614-8755-9c1d-a3608b53f8a0")
    dead_letter_id = _archive_directly(engine, body)

    shown = cli("dlq", "show", str(dead_letter_id), "--json").json()

    published = json.loads(body)
    assert shown["message_id"] == message_id_of(body)
    assert shown["envelope"]["occurred_at"] == published["occurred_at"]


# -- demo -------------------------------------------------------------------------------------------


def test_the_demo_runs_a_day_across_all_six_flows_showing_every_outcome_and_failure_stage(tmp_path: Path) -> None:
    lines: list[str] = []

    summary = demo.run(print_line=lines.append)

    outcomes = summary["outcomes"]
    # A message is retried in the demo only when a capture wins the race with its authorization: the ERP's
    # 503s are now retried by the relay, not by the message (ERP requests > effects, asserted below).
    for outcome in ("processed", "duplicate", "stale", "dead_lettered"):
        assert outcomes[outcome] > 0, outcome
    assert all(counts["processed"] > 0 for counts in summary["flows"].values()), summary["flows"]
    assert set(summary["flows"]) == {"orders", "inventory", "payments", "fulfillment", "returns", "catalog"}
    assert {"decode", "contract", "handler", "expired", "delivery"} <= {d["stage"] for d in summary["dead_letters"]}
    refused_deliveries = [d for d in summary["dead_letters"] if d["stage"] == "delivery"]
    assert outcomes["dead_lettered"] == len(summary["dead_letters"]) - len(refused_deliveries)
    assert {d["flow"] for d in refused_deliveries} == {"orders"}, "the refused and the never-reachable order export"
    assert summary["erp_order_exports"] == sum(summary["orders_by_status"].values()) - len(refused_deliveries), (
        "every order is kept; those whose export the ERP refused or never took wait as delivery dead letters"
    )
    assert summary["downstream"]["erp"]["requests"] > summary["downstream"]["erp"]["effects"]
    window = summary["maintenance_window"]
    assert window["orders_reserved"] == 3, "the ERP's maintenance window reserves every order placed during it"
    assert window["erp_requests_while_paused"] == 0
    assert window["erp_backlog_at_resume"] == 3 and window["erp_backlog_after"] == 0
    assert sorted(window["erp_exported_after_resume"]) == [f"order-export:ORD-300{n}" for n in (1, 2, 3)]
    assert summary["deliveries"]["channels"]["superseded"] > 0, "availability backlogs carry only the latest value"
    assert all(level["available"] >= 0 and level["reserved"] <= level["on_hand"] for level in summary["stock"].values())
    assert summary["captured_minor"] == 3998 + 5997, (
        "both partial captures applied, and the one published before its authorization (retried if it won the race)"
    )
    assert summary["refunded_minor"] == 3998 - 300, "the return's refund, less the restocking fee"
    assert summary["orders_by_status"]["delivered"] == 2
    assert summary["orders_by_status"]["cancelled"] == 1
    assert summary["stock"]["TEE-RED-M@RET-1"]["available"] == 2, "returned sellable shirts are back in stock"
    assert summary["stock"]["SNEAKER-42@BER-1"]["on_hand"] == 8, "the backorder was served by the receipt and shipped"
    assert any(line.startswith("morning: orders") for line in lines)
    assert any("Dead-letter archive" in line for line in lines)
    assert list(tmp_path.iterdir()) == [], "the demo must clean up its temporary database"


def test_flowfleet_demo_exits_zero_and_prints_its_summary(cli: Cli) -> None:
    ran = cli("demo")

    assert ran.code == 0
    assert "Outcomes per flow:" in ran.out
    assert "Dead-letter archive" in ran.out
