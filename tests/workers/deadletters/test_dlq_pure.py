"""Dead-letter operations without broker or database: JSON Patch, replay mark, keys, routing, repair checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.published import REGISTRY
from handlers.errors import PermanentError
from tests.support.envelopes import envelope, order_v1, order_v2
from workers.cli.command import CommandError
from workers.cli.dlq.arguments import parse_moment
from workers.deadletters.copies import copy_headers, route
from workers.deadletters.repair import PatchError, RepairRefused, apply_patch, lenient_dedup_key, repair
from workers.failures import classify
from workers.messaging.dead_letters import archive_record, dead_letter_headers, dead_letter_id, search_keys
from workers.messaging.replay_headers import REPLAY_ACTION_HEADER, REPLAY_OF_HEADER, ReplayMark
from workers.store.archive.records import DeadLetterFilter

# -- JSON Patch ------------------------------------------------------------------------------------

DATA = {"order_id": "ORD-1", "lines": [{"sku": "A", "quantity": -3}], "a/b": 1, "m~n": 2}


def test_replace_add_remove_and_test_apply_in_order_to_a_copy() -> None:
    patch = [
        {"op": "test", "path": "/lines/0/quantity", "value": -3},
        {"op": "replace", "path": "/lines/0/quantity", "value": 2},
        {"op": "add", "path": "/lines/-", "value": {"sku": "B", "quantity": 1}},
        {"op": "add", "path": "/lines/0", "value": {"sku": "Z", "quantity": 9}},
        {"op": "remove", "path": "/a~1b"},
        {"op": "add", "path": "/note", "value": "fixed"},
        {"op": "replace", "path": "/m~0n", "value": 3},
    ]

    patched = apply_patch(DATA, patch)

    assert [line["sku"] for line in patched["lines"]] == ["Z", "A", "B"]
    assert patched["lines"][1]["quantity"] == 2
    assert "a/b" not in patched and patched["note"] == "fixed" and patched["m~n"] == 3
    assert DATA["lines"] == [{"sku": "A", "quantity": -3}], "the input is never changed"


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"op": "replace"}, "JSON array"),
        ([{"op": "rename", "path": "/x", "from": "/y"}], "operation 1 (rename /x): Unknown operation 'rename'"),
        ([{"op": "replace", "path": "/nope", "value": 1}], "operation 1 (replace /nope): .*non-existent object 'nope'"),
        ([{"op": "replace", "path": "/lines/5/quantity", "value": 1}], "out of bounds"),
        ([{"op": "remove", "path": "/lines/01"}], "not a valid sequence index"),
        ([{"op": "test", "path": "/lines/0/quantity", "value": 3}], "not equal to tested value"),
        ([{"op": "add", "path": "order_id", "value": 1}], "must start with /"),
        ([{"op": "add", "path": "/x"}], "does not contain a 'value' member"),
        ([{"op": "remove", "path": ""}], "whole document"),
        ([{"op": "move", "path": "/x", "from": "/nope"}], "operation 1 (move /x)"),
    ],
)
def test_a_patch_that_cannot_apply_is_refused_naming_the_operation(patch: Any, words: str) -> None:
    with pytest.raises(PatchError, match=words.replace("(", r"\(").replace(")", r"\)")):
        apply_patch(DATA, patch)


def test_a_failed_test_operation_leaves_nothing_applied() -> None:
    patch = [{"op": "replace", "path": "/order_id", "value": "X"}, {"op": "test", "path": "/order_id", "value": "Y"}]

    with pytest.raises(PatchError, match="operation 2"):
        apply_patch(DATA, patch)
    assert DATA["order_id"] == "ORD-1"


def test_a_test_operation_tells_true_from_one_but_not_one_from_one_point_zero() -> None:
    def passes(document: Any, value: Any) -> bool:
        try:
            apply_patch({"x": document}, [{"op": "test", "path": "/x", "value": value}])
        except PatchError:
            return False
        return True

    assert passes(1, 1.0)
    assert not passes(True, 1)
    assert passes({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not passes({"a": 1}, {"a": 1, "b": 2})


def test_move_and_copy_apply_to_a_copy() -> None:
    patch = [
        {"op": "copy", "from": "/lines/0", "path": "/lines/-"},
        {"op": "move", "from": "/a~1b", "path": "/moved"},
    ]

    patched = apply_patch(DATA, patch)

    assert patched["lines"] == [{"sku": "A", "quantity": -3}, {"sku": "A", "quantity": -3}]
    assert patched["moved"] == 1 and "a/b" not in patched
    assert patched["lines"][1] is not patched["lines"][0], "a copy is a value, not a shared reference"
    assert DATA == {"order_id": "ORD-1", "lines": [{"sku": "A", "quantity": -3}], "a/b": 1, "m~n": 2}


# -- the replay mark and the archive key -----------------------------------------------------------


def test_a_replay_mark_reads_back_from_its_headers_and_ignores_anything_else() -> None:
    mark = ReplayMark(dead_letter_id=12, action_id=3)

    assert ReplayMark.from_headers(mark.headers()) == mark
    assert ReplayMark.from_headers({REPLAY_OF_HEADER: 12, REPLAY_ACTION_HEADER: b"3"}) == mark
    for bad in ({}, {REPLAY_OF_HEADER: "12"}, {REPLAY_OF_HEADER: "x", REPLAY_ACTION_HEADER: "3"}):
        assert ReplayMark.from_headers(bad) is None
    assert ReplayMark.from_headers({REPLAY_OF_HEADER: True, REPLAY_ACTION_HEADER: "3"}) is None
    assert ReplayMark.from_headers({REPLAY_OF_HEADER: "0", REPLAY_ACTION_HEADER: "3"}) is None


def test_a_replayed_copy_that_fails_again_has_a_new_archive_key_though_its_bytes_are_the_same() -> None:
    body = envelope(order_v2("ORD-1"))
    original = dead_letter_id("orders", body)
    first_replay = dead_letter_id("orders", body, ReplayMark(1, 7).headers())

    assert dead_letter_id("orders", body, {"other": "header"}) == original, "no mark: the old key, unchanged"
    assert first_replay != original
    assert dead_letter_id("orders", body, ReplayMark(1, 7).headers()) == first_replay, "a redelivery: same key"
    assert dead_letter_id("orders", body, ReplayMark(1, 8).headers()) != first_replay, "another replay: new key"


def test_a_dead_letter_keeps_the_replay_mark_and_its_record_links_to_the_replay() -> None:
    body = envelope(order_v2("ORD-1"))
    mark = ReplayMark(41, 5)
    headers = dead_letter_headers(
        classify(PermanentError("erp POST /orders answered 400")),
        dead_letter_id=dead_letter_id("orders", body, mark.headers()),
        event={},
        original_headers={**mark.headers(), "traceparent": "00-abc", "x-flowfleet-stage": "stale"},
        attempts=1,
        delivery_count=0,
        first_failed_ms=0,
        last_failed_ms=0,
    )

    record = archive_record("orders", "orders.XQ", headers, body)

    assert (record["replay_of"], record["replay_action_id"]) == (41, 5)
    assert record["headers"][REPLAY_OF_HEADER] == "41"
    assert record["headers"]["traceparent"] == "00-abc"
    assert record["stage"] == "handler", "the failure headers are the worker's, not the stale original"
    assert record["dead_letter_key"] == dead_letter_id("orders", body, mark.headers())


def test_a_record_without_a_mark_links_to_nothing() -> None:
    record = archive_record("orders", "orders.XQ", {}, b"not json")

    assert (record["replay_of"], record["replay_action_id"]) == (None, None)


def test_search_keys_hold_the_business_keys_and_the_ids_at_the_top_of_data_that_failed_validation() -> None:
    invalid = json.loads(envelope({"payment_id": "PAY-1", "order_id": "ORD-9", "amount_minor": -5, "ok": True}))

    keys = search_keys({}, json.dumps(invalid).encode())

    assert keys == [("order_id", "ORD-9"), ("payment_id", "PAY-1")]
    assert search_keys({"order_id": "ORD-9"}, b"\xff") == [("order_id", "ORD-9")]


# -- routing a copy --------------------------------------------------------------------------------


def test_a_copy_goes_to_the_exchange_by_contract_or_to_its_flow_queue_when_the_contract_cannot_route_it() -> None:
    assert route({"contract": "order.created", "flow": "orders", "queue": "orders.XQ"}, REGISTRY, "ex") == (
        "ex",
        "order.created",
    )
    for contract in (None, "order.nope", "payment.captured"):
        record = {"contract": contract, "flow": "orders", "queue": "t1.orders.XQ"}
        assert route(record, REGISTRY, "ex") == ("", "t1.orders"), contract


def test_a_copy_leaves_delivery_bookkeeping_behind_and_carries_its_mark() -> None:
    original = {
        "x-death": [{}],
        "x-delivery-count": 3,
        "x-first-death-queue": "orders",
        "x-flowfleet-format": "dramatiq",
        REPLAY_OF_HEADER: "1",
        "traceparent": "00-abc",
    }

    headers = copy_headers(original, ReplayMark(9, 4))

    assert headers == {"traceparent": "00-abc", REPLAY_OF_HEADER: "9", REPLAY_ACTION_HEADER: "4"}


# -- filters and times -----------------------------------------------------------------------------


def test_a_filter_survives_its_round_trip_through_json() -> None:
    where = DeadLetterFilter(
        flow="orders",
        status=None,
        fingerprint="abc",
        since=datetime(2026, 1, 1, tzinfo=UTC),
        keys=(("order_id", "ORD-1"),),
        ids=(3, 4),
    )

    assert DeadLetterFilter.from_json(json.loads(json.dumps(where.to_json()))) == where
    assert where.narrows
    assert not DeadLetterFilter(status="open").narrows


def test_times_are_relative_or_iso_and_utc_unless_they_say_otherwise() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    assert parse_moment("2h", now=now) == now - timedelta(hours=2)
    assert parse_moment("3d", now=now) == now - timedelta(days=3)
    assert parse_moment("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_moment("2026-11-20T10:00:00+01:00").utcoffset() == timedelta(hours=1)
    with pytest.raises(CommandError, match="not a time"):
        parse_moment("yesterday")


# -- repair checks ---------------------------------------------------------------------------------


def _record(body: bytes, *, dedup_key: str | None = None, flow: str = "orders") -> dict[str, Any]:
    return {"body": body, "flow": flow, "dedup_key": dedup_key}


def _negative_quantity() -> bytes:
    data = order_v2("ORD-7")
    data["lines"][0]["quantity"] = -3
    return envelope(data, message_id="m-7")


def test_a_repair_that_fixes_the_data_keeps_the_envelope_identity_and_the_dedup_key() -> None:
    body = _negative_quantity()

    repaired = repair(_record(body), [{"op": "replace", "path": "/lines/0/quantity", "value": 2}], REGISTRY)

    before, after = json.loads(body), json.loads(repaired.body)
    assert after["data"]["lines"][0]["quantity"] == 2
    assert {k: v for k, v in after.items() if k != "data"} == {k: v for k, v in before.items() if k != "data"}
    assert repaired.dedup_key == "ORD-7"


def test_a_repair_that_still_breaks_the_contract_is_refused_with_the_field_path() -> None:
    with pytest.raises(RepairRefused) as refused:
        repair(_record(_negative_quantity()), [{"op": "replace", "path": "/lines/0/quantity", "value": 0}], REGISTRY)

    assert "breaks the contract" in refused.value.reason
    assert refused.value.field_paths == ("data.lines.0.quantity",)


def test_a_repair_may_not_change_the_dedup_key_even_of_data_that_never_validated() -> None:
    patch = [
        {"op": "replace", "path": "/lines/0/quantity", "value": 2},
        {"op": "replace", "path": "/order_id", "value": "ORD-8"},
    ]

    with pytest.raises(RepairRefused, match="changes the dedup key from 'ORD-7' to 'ORD-8'"):
        repair(_record(_negative_quantity()), patch, REGISTRY)
    with pytest.raises(RepairRefused, match="dedup key"):
        repair(_record(envelope(order_v2("ORD-7")), dedup_key="ORD-7"), patch[1:], REGISTRY)


def test_a_repair_by_copy_fixes_the_data_and_keeps_the_envelope_identity_and_the_dedup_key() -> None:
    data = order_v2("ORD-7", (("TEE-RED-M", 2), ("MUG-BLUE", 1)))
    data["lines"][0]["quantity"] = -3
    body = envelope(data, message_id="m-7")
    patch = [{"op": "copy", "from": "/lines/1/quantity", "path": "/lines/0/quantity"}]

    repaired = repair(_record(body), patch, REGISTRY)

    before, after = json.loads(body), json.loads(repaired.body)
    assert [line["quantity"] for line in after["data"]["lines"]] == [1, 1]
    assert {k: v for k, v in after.items() if k != "data"} == {k: v for k, v in before.items() if k != "data"}
    assert repaired.dedup_key == "ORD-7"


def test_a_repair_by_move_may_not_change_the_dedup_key_nor_break_the_contract() -> None:
    data = order_v2("ORD-7")
    data["lines"][0]["quantity"] = -3
    data["spare_id"] = "ORD-8"
    body = envelope(data, message_id="m-7")
    fix = {"op": "replace", "path": "/lines/0/quantity", "value": 2}

    with pytest.raises(RepairRefused, match="changes the dedup key from 'ORD-7' to 'ORD-8'"):
        repair(_record(body), [fix, {"op": "move", "from": "/spare_id", "path": "/order_id"}], REGISTRY)
    with pytest.raises(RepairRefused, match="breaks the contract") as refused:
        repair(_record(body), [fix, {"op": "move", "from": "/order_id", "path": "/spare_id"}], REGISTRY)
    assert "data.order_id" in refused.value.field_paths


def test_a_repair_cannot_set_a_dedup_key_the_original_did_not_have() -> None:
    data = order_v2("ORD-7")
    del data["order_id"]

    with pytest.raises(RepairRefused, match="cannot be read"):
        repair(_record(envelope(data)), [{"op": "add", "path": "/order_id", "value": "ORD-7"}], REGISTRY)


def test_a_body_that_is_not_an_envelope_cannot_be_repaired() -> None:
    with pytest.raises(RepairRefused, match="not a readable envelope"):
        repair(_record(b'{"message_id": "m", "data": {'), [], REGISTRY)


def test_the_dedup_key_of_invalid_data_is_read_from_its_valid_fields_through_the_upcasters() -> None:
    contract = REGISTRY.get("order.created")
    v1 = order_v1("ORD-V1", "TEE", 1)
    v1["total_cents"] = "lots"

    assert lenient_dedup_key(contract, 1, v1) == "ORD-V1"
    assert lenient_dedup_key(contract, 2, {"lines": []}) is None
    assert lenient_dedup_key(contract, 9, v1) is None
