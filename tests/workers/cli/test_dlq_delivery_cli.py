"""`flowfleet dlq` on dead letters of stage `delivery`: listed with the event's keys, replayed after a fix
with the same Idempotency-Key, repaired in their request body, discarded so their order's key flows again."""

from __future__ import annotations

import json

import pytest

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import Cli, FleetRun
from tests.support.outbox import by_key
from workers.delivery.fake import FakeDownstream

REASON = "ERP fixed its order import (INC-12)"


@pytest.fixture
def cli(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("FLOWFLEET_OPERATOR", "oncall")
    return cli


def cancel(order_id: str) -> bytes:
    return envelope({"order_id": order_id, "reason": "customer_request"}, version=1, contract="order.cancelled")


@pytest.fixture
def refused(fleet: FleetRun, erp: FakeDownstream) -> dict[str, bool]:
    """ORD-1's export refused (400), its cancel waiting behind it; `refused["on"] = False` fixes the ERP."""
    state = {"on": True}
    erp.responder = lambda path, payload, _k, _a: (
        400 if state["on"] and path == "/orders" and payload["order_id"] == "ORD-1" else 200
    )
    fleet.run(envelope(order_v2("ORD-1")), envelope(order_v2("ORD-2")))
    fleet.run(cancel("ORD-1"))
    return state


def test_a_refused_export_is_listed_by_stage_and_order_and_replayed_after_the_fix_with_the_same_key(
    cli: Cli, fleet: FleetRun, erp: FakeDownstream, refused: dict[str, bool]
) -> None:
    listed = cli("dlq", "list", "--stage", "delivery", "--key", "order_id=ORD-1", "--json").json()
    [item] = listed["items"]
    assert (item["stage"], item["flow"], item["queue"]) == ("delivery", "orders", "outbox.erp")

    dry = cli("dlq", "replay", "--stage", "delivery", "--dry-run")
    assert dry.code == 0
    assert "POST /orders with Idempotency-Key order-export:ORD-1" in dry.out
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "dead_lettered", "a dry run sends nothing"

    refused["on"] = False
    ran = cli("dlq", "replay", "--stage", "delivery", "--reason", REASON)
    assert ran.code == 0, ran.err
    assert "1 delivery dead letter(s) back in the outbox" in ran.out
    fleet.deliver()

    sent = [(key, status) for _p, key, status in erp.requests if key.endswith("ORD-1")]
    assert sent == [("order-export:ORD-1", 400), ("order-export:ORD-1", 200), ("order-cancel:ORD-1", 200)]
    assert cli("dlq", "list", "--stage", "delivery", "--json").json()["total"] == 0
    shown = cli("dlq", "show", str(item["id"]), "--json").json()
    assert shown["status"] == "resolved"
    assert [e["action"] for e in shown["history"]] == ["archived", "replayed", "resolved"]
    assert shown["history"][1]["reason"] == REASON


def test_a_repair_patches_the_refused_request_and_sends_it_with_its_key(
    cli: Cli, fleet: FleetRun, erp: FakeDownstream, refused: dict[str, bool]
) -> None:
    [item] = cli("dlq", "list", "--stage", "delivery", "--json").json()["items"]
    refused["on"] = False
    patch = json.dumps([{"op": "replace", "path": "/channel", "value": "web"}])

    ran = cli("dlq", "repair", str(item["id"]), "--patch", patch, "--reason", "ERP needs the web channel")
    assert ran.code == 0, ran.err
    fleet.deliver()

    assert erp.applied["order-export:ORD-1"]["channel"] == "web"


def test_discarding_a_refused_export_lets_its_orders_cancel_go_and_never_sends_the_export(
    cli: Cli, fleet: FleetRun, erp: FakeDownstream, refused: dict[str, bool]
) -> None:
    [item] = cli("dlq", "list", "--stage", "delivery", "--json").json()["items"]

    ran = cli("dlq", "discard", str(item["id"]), "--reason", "exported by hand in the ERP")
    assert ran.code == 0, ran.err
    fleet.deliver()

    assert "order-cancel:ORD-1" in erp.applied
    assert "order-export:ORD-1" not in erp.applied
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "discarded"


def test_reconcile_lists_a_refused_export_until_dlq_replay_sends_it_and_not_after(
    cli: Cli, fleet: FleetRun, refused: dict[str, bool]
) -> None:
    before = cli("reconcile", "--system", "erp", "--json")
    assert before.code == 1, "a dead-lettered export is a settlement mismatch"
    assert before.json()["mismatches"] == 1
    assert "order ORD-1 reserved here, not posted to the ERP: dead letter" in before.out

    refused["on"] = False
    assert cli("dlq", "replay", "--stage", "delivery", "--reason", REASON).code == 0
    fleet.deliver()

    after = cli("reconcile", "--system", "erp", "--json")
    assert after.code == 0, after.out
    assert after.json()["mismatches"] == 0
    assert "ORD-1" not in after.out
