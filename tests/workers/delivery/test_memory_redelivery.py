"""Delivery dead letters in operators' hands: sent again with the same key after a fix, patched, or suppressed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun
from tests.support.outbox import by_key
from workers.deadletters.redelivery import (
    delivery_dead_letters,
    hold_restored,
    preview,
    repair_delivery,
    replay_deliveries,
    suppress_discarded,
)
from workers.delivery.fake import FakeDownstream
from workers.store.archive.records import DeadLetterFilter, get_dead_letter
from workers.store.outbox.redelivery import delivery_of, redeliver, suppress, unsuppress


def cancel(order_id: str) -> bytes:
    return envelope({"order_id": order_id, "reason": "customer_request"}, version=1, contract="order.cancelled")


def refused_export(fleet: FleetRun, erp: FakeDownstream) -> dict[str, Any]:
    """ORD-1's export refused (400) and its cancel recorded behind it: returns the export's dead letter."""
    refusing = {"on": True}
    erp.responder = lambda _p, payload, _k, _a: 400 if refusing["on"] and payload["order_id"] == "ORD-1" else 200
    fleet.run(envelope(order_v2("ORD-1")))
    fleet.run(cancel("ORD-1"))
    refusing["on"] = False
    [dead] = fleet.dead_letters()
    return dead


def test_a_replayed_delivery_goes_out_with_the_same_key_then_its_key_flows_and_its_dead_letter_is_resolved(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    dead = refused_export(fleet, erp)
    assert by_key(fleet.engine)["order-cancel:ORD-1"]["status"] == "pending"

    with fleet.engine.begin() as connection:
        assert redeliver(connection, dead["id"], now=datetime.now(UTC))
        assert not redeliver(connection, dead["id"], now=datetime.now(UTC)), "a second replay finds it pending"
    fleet.deliver()

    assert [(key, status) for _path, key, status in erp.requests] == [
        ("order-export:ORD-1", 400),
        ("order-export:ORD-1", 200),
        ("order-cancel:ORD-1", 200),
    ]
    with fleet.engine.connect() as connection:
        record = get_dead_letter(connection, dead["id"])
    assert record is not None
    assert record["status"] == "resolved"
    assert record["history"][-1]["action"] == "resolved"


def test_a_repaired_delivery_sends_the_patched_body(fleet: FleetRun, erp: FakeDownstream) -> None:
    dead = refused_export(fleet, erp)
    with fleet.engine.connect() as connection:
        delivery = delivery_of(connection, dead["id"])
    assert delivery is not None
    assert delivery["body"] == json.loads(dead["body"])
    patched = delivery["body"] | {"channel": "web"}

    with fleet.engine.begin() as connection:
        assert redeliver(connection, dead["id"], now=datetime.now(UTC), body=patched)
    fleet.deliver()

    assert erp.applied["order-export:ORD-1"]["channel"] == "web"


def test_a_discarded_delivery_is_never_sent_and_its_key_flows_and_a_restore_holds_it_again(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    dead = refused_export(fleet, erp)

    with fleet.engine.begin() as connection:
        assert suppress(connection, dead["id"], now=datetime.now(UTC))
    fleet.deliver()

    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "discarded"
    assert list(erp.applied) == ["order-cancel:ORD-1"], "the cancel no longer waits; the export is never sent"
    with fleet.engine.begin() as connection:
        assert unsuppress(connection, dead["id"])
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "dead_lettered"


def test_a_replayed_delivery_refused_again_is_a_new_dead_letter_naming_the_one_it_came_from(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    dead = refused_export(fleet, erp)
    erp.responder = lambda *_: 422

    with fleet.engine.begin() as connection:
        redeliver(connection, dead["id"], now=datetime.now(UTC))
    fleet.deliver()

    records = fleet.dead_letters()
    assert len(records) == 2
    assert records[1]["headers"]["previous_dead_letter_id"] == dead["id"]
    assert by_key(fleet.engine)["order-export:ORD-1"]["dead_letter_id"] == records[1]["id"]


# -- as the dlq commands do it: audited actions -----------------------------------------------------------


def test_a_replay_action_sends_each_delivery_dead_letter_again_once_and_audits_it(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    dead = refused_export(fleet, erp)
    where = DeadLetterFilter(flow="orders")

    with fleet.engine.begin() as connection:
        ids = delivery_dead_letters(connection, where)
        assert preview(connection, ids) == [
            {
                "dead_letter_id": dead["id"],
                "system": "erp",
                "path": "/orders",
                "idempotency_key": "order-export:ORD-1",
                "status": "dead_lettered",
            }
        ]
        done = replay_deliveries(connection, ids, actor="oncall", reason="ERP fixed INC-9", selection={})
        again = replay_deliveries(connection, ids, actor="oncall", reason="twice", selection={})
    fleet.deliver()

    assert (done.sent_again, done.skipped, again.sent_again) == ([dead["id"]], [], [])
    assert [status for _p, key, status in erp.requests if key == "order-export:ORD-1"] == [400, 200]
    with fleet.engine.connect() as connection:
        record = get_dead_letter(connection, dead["id"])
        assert delivery_dead_letters(connection, where) == []
    assert record is not None
    assert [(e["action"], e["actor"]) for e in record["history"]] == [
        ("archived", "flowfleet-drain"),
        ("replayed", "oncall"),
        ("resolved", "flowfleet-relay"),
    ]


def test_a_repair_patches_the_request_body_and_refuses_a_patch_that_does_not_apply(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    dead = refused_export(fleet, erp)
    patch = [{"op": "replace", "path": "/channel", "value": "web"}]

    with fleet.engine.begin() as connection:
        with pytest.raises(ValueError, match="does not apply"):
            repair_delivery(connection, dead["id"], [{"op": "remove", "path": "/nope"}], actor="oncall", reason="x")
        preview_body = repair_delivery(connection, dead["id"], patch, actor="oncall", reason="x", dry_run=True)
        assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "dead_lettered", "a dry run changes nothing"
        repair_delivery(connection, dead["id"], patch, actor="oncall", reason="ERP wants the web channel")
    fleet.deliver()

    assert preview_body["channel"] == "web"
    assert erp.applied["order-export:ORD-1"]["channel"] == "web"


def test_discarding_and_restoring_move_the_delivery_with_its_dead_letter(fleet: FleetRun, erp: FakeDownstream) -> None:
    dead = refused_export(fleet, erp)

    with fleet.engine.begin() as connection:
        assert suppress_discarded(connection, [dead["id"]]) == 1
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "discarded"
    with fleet.engine.begin() as connection:
        assert hold_restored(connection, [dead["id"]]) == 1
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "dead_lettered"
