"""The orders flow end to end on the in-memory broker: production actors, middleware, dedup and archive."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from tests.support.envelopes import envelope, message_id_of, order_v1, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRun
from workers.delivery.fake import FakeDownstream


def messages_total(outcome: str, *, version: str = "2") -> float:
    """The Prometheus counter now (a process-wide global: compare before and after, never absolutes)."""
    labels = {"flow": "orders", "contract": "order.created", "version": version, "outcome": outcome}
    return METRICS.get_sample_value("flowfleet_messages_total", labels) or 0.0


def statuses(erp: FakeDownstream) -> list[int]:
    return [status for _path, _key, status in erp.requests]


def by_attempt(*answers: int) -> Callable[[str, Mapping[str, Any], str, int], int]:
    """An ERP that answers the n-th request for a key with answers[n-1], then keeps the last answer."""
    return lambda _path, _payload, _key, attempt: answers[min(attempt, len(answers)) - 1]


def test_a_v2_order_is_stored_with_its_lines_and_stock_reserved_and_exported_once(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    fleet.run(envelope(order_v2("ORD-100", [("TEE-RED-M", 2), ("MUG-BLUE", 3)])))

    order = fleet.orders()["ORD-100"]
    assert (order["status"], order["channel"], order["currency"], order["total_minor"]) == (
        "reserved",
        "storefront",
        "EUR",
        5 * 1999,
    )
    lines = [(r["line_id"], r["sku"], r["quantity"], r["status"], r["location"]) for r in fleet.order_lines("ORD-100")]
    assert lines == [("1", "TEE-RED-M", 2, "reserved", "BER-1"), ("2", "MUG-BLUE", 3, "reserved", "BER-1")]
    assert fleet.reserved("TEE-RED-M", "BER-1") == 2
    assert fleet.reserved("MUG-BLUE", "BER-1") == 3
    assert list(erp.applied) == ["order-export:ORD-100"]
    assert len(erp.requests) == 1
    assert fleet.tally("processed") == 1
    assert fleet.dead_letters() == []


def test_a_line_no_location_can_cover_is_backordered_and_the_order_still_exported(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    fleet.run(envelope(order_v2("ORD-101", [("LAMP-ARC", 3), ("MUG-BLUE", 1)])))

    assert fleet.orders()["ORD-101"]["status"] == "partially_backordered"
    assert [(r["sku"], r["status"], r["location"]) for r in fleet.order_lines("ORD-101")] == [
        ("LAMP-ARC", "backordered", None),
        ("MUG-BLUE", "reserved", "BER-1"),
    ]
    assert fleet.reserved("LAMP-ARC", "HAM-2") == 0
    assert erp.applied["order-export:ORD-101"]["status"] == "partially_backordered"


def test_the_same_order_twice_under_different_message_ids_has_one_effect(fleet: FleetRun, erp: FakeDownstream) -> None:
    data = order_v2("ORD-102", [("TEE-RED-M", 2)])
    first, second = envelope(data), envelope(data)
    assert message_id_of(first) != message_id_of(second)
    duplicates_before = messages_total("duplicate")

    fleet.run(first, second)

    assert list(fleet.orders()) == ["ORD-102"]
    assert len(fleet.order_lines("ORD-102")) == 1
    assert fleet.reserved("TEE-RED-M", "BER-1") == 2
    assert list(erp.applied) == ["order-export:ORD-102"]
    assert len(erp.requests) == 1
    assert (fleet.tally("processed"), fleet.tally("duplicate")) == (1, 1)
    assert messages_total("duplicate") - duplicates_before == 1
    assert fleet.dead_letters() == []


def test_a_v1_order_is_upcast_and_stored_as_a_storefront_order(fleet: FleetRun, erp: FakeDownstream) -> None:
    processed_v1_before = messages_total("processed", version="1")

    fleet.run(envelope(order_v1("ORD-103", "MUG-BLUE", 2), version=1))

    order = fleet.orders()["ORD-103"]
    assert (order["channel"], order["currency"], order["total_minor"], order["customer_id"]) == (
        "storefront",
        "GBP",
        2500,
        None,
    )
    assert [(r["line_id"], r["sku"], r["quantity"], r["unit_price_minor"]) for r in fleet.order_lines("ORD-103")] == [
        ("1", "MUG-BLUE", 2, 1250)
    ]
    assert erp.applied["order-export:ORD-103"]["channel"] == "storefront"
    assert messages_total("processed", version="1") - processed_v1_before == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"message_id": "m-cut", "contract": "order.created", "vers', "not JSON"),
        (b'\xff\xfe{"order_id": "ORD-1"}\x80\x00', "not UTF-8"),
        (b"[1, 2, 3]", "not an envelope object"),
        (b'{"message_id": "m-1", "contract": "order.created", "data": {}}', "not an envelope"),
    ],
    ids=["truncated-json", "not-utf8", "json-array", "envelope-missing-fields"],
)
def test_a_body_that_is_not_an_envelope_is_dead_lettered_at_decode_with_its_exact_bytes(
    fleet: FleetRun, erp: FakeDownstream, body: bytes, reason: str
) -> None:
    fleet.run(body, headers={"x-publisher-trace": "checkout-7"})

    [dead] = fleet.dead_letters()
    assert dead["stage"] == "decode"
    assert dead["attempts"] == 1
    assert reason in dead["error_message"]
    assert dead["body"] == body
    assert dead["headers"]["x-publisher-trace"] == "checkout-7"
    assert [event["action"] for event in dead["history"]] == ["archived"]
    assert erp.requests == []
    assert (fleet.tally("dead_lettered"), fleet.tally("retried")) == (1, 0)


def _unknown_version() -> bytes:
    return envelope(order_v2("ORD-104"), version=7)


def _negative_quantity() -> bytes:
    data = order_v2("ORD-105", [("MUG-BLUE", 1), ("TEE-RED-M", 1)])
    data["lines"][1]["quantity"] = -3
    return envelope(data)


def _bad_email_and_currency() -> bytes:
    data = order_v2("ORD-106")
    data["customer"]["email"] = "not-an-email"
    data["currency"] = "euro"
    return envelope(data)


def _unknown_contract() -> bytes:
    return envelope(order_v2("ORD-107"), contract="order.teleported")


@pytest.mark.parametrize(
    ("build", "reason", "field_paths"),
    [
        (_unknown_version, "order.created has no version 7", []),
        (_negative_quantity, "data.lines.1.quantity", ["data.lines.1.quantity"]),
        (_bad_email_and_currency, "data.customer.email", ["data.customer.email", "data.currency"]),
        (_unknown_contract, "unknown contract 'order.teleported'", []),
    ],
    ids=["unknown-version", "negative-quantity", "two-bad-fields", "unknown-contract"],
)
def test_an_unknown_version_or_invalid_data_is_dead_lettered_at_contract_with_field_paths(
    fleet: FleetRun, erp: FakeDownstream, build: Callable[[], bytes], reason: str, field_paths: list[str]
) -> None:
    body = build()

    fleet.run(body)

    [dead] = fleet.dead_letters()
    assert dead["stage"] == "contract"
    assert dead["attempts"] == 1
    assert reason in dead["error_message"]
    assert sorted(dead["field_paths"]) == sorted(field_paths)
    assert dead["message_id"] == message_id_of(body)
    assert dead["body"] == body
    assert erp.requests == []
    assert fleet.orders() == {}
    assert (fleet.tally("dead_lettered"), fleet.tally("retried")) == (1, 0)


def test_an_erp_that_answers_503_twice_then_200_gets_one_export_under_one_idempotency_key(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = by_attempt(503, 503, 200)
    retried_before = messages_total("retried")

    fleet.run(envelope(order_v2("ORD-108", [("TEE-RED-M", 2)])))

    assert statuses(erp) == [503, 503, 200]
    assert {key for _path, key, _status in erp.requests} == {"order-export:ORD-108"}
    assert list(erp.applied) == ["order-export:ORD-108"]
    assert list(fleet.orders()) == ["ORD-108"]
    assert fleet.reserved("TEE-RED-M", "BER-1") == 2, "the ERP's 503s never touch the reservation"
    assert (fleet.tally("retried"), fleet.tally("processed"), fleet.tally("dead_lettered")) == (0, 1, 0), (
        "the relay retries the delivery; the message itself was applied once, at the first attempt"
    )
    assert messages_total("retried") - retried_before == 0
    assert fleet.dead_letters() == []


def test_an_erp_refusal_keeps_the_order_and_makes_its_export_a_delivery_dead_letter_with_the_events_keys(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = by_attempt(400)
    body = envelope(order_v2("ORD-109", [("MUG-BLUE", 4)]))

    fleet.run(body)

    [dead] = fleet.dead_letters()
    assert (dead["stage"], dead["attempts"], dead["error_type"]) == ("delivery", 1, "PermanentError")
    assert "answered 400" in dead["error_message"]
    assert (dead["dedup_key"], dead["business_keys"]) == ("ORD-109", {"order_id": "ORD-109"})
    assert (dead["flow"], dead["queue"], dead["contract"]) == ("orders", "outbox.erp", "order.created")
    assert dead["message_id"] == message_id_of(body)
    assert json.loads(dead["body"])["order_id"] == "ORD-109", "the archived body is the request the ERP refused"
    assert dead["headers"]["idempotency_key"] == "order-export:ORD-109"
    assert statuses(erp) == [400]
    assert list(fleet.orders()) == ["ORD-109"], "the order is applied; only its export waits for an operator"
    assert fleet.reserved("MUG-BLUE", "BER-1") == 4
    assert (fleet.tally("retried"), fleet.tally("processed"), fleet.tally("dead_lettered")) == (0, 1, 0)


def test_an_erp_that_stays_down_keeps_the_order_reserved_with_its_export_pending_and_no_dead_letter(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = by_attempt(503, 502, 504)

    fleet.run(envelope(order_v2("ORD-110")))

    assert list(fleet.orders()) == ["ORD-110"]
    assert fleet.reserved("TEE-RED-M", "BER-1") == 2
    assert fleet.dead_letters() == []
    assert len(statuses(erp)) >= 3 and set(statuses(erp)[2:]) == {504}
    assert erp.applied == {}
    assert (fleet.tally("retried"), fleet.tally("dead_lettered"), fleet.tally("processed")) == (0, 0, 1)


def test_an_export_whose_delivery_budget_is_spent_is_a_delivery_dead_letter_with_the_final_error(
    fleet_runner: Callable[..., FleetRun], settings: Any, erp: FakeDownstream
) -> None:
    settings.erp_delivery_budget_seconds = 1
    settings.breaker_threshold = 1000  # this test is about the budget, not the breaker
    fleet = fleet_runner()
    erp.responder = by_attempt(503, 502, 504)

    fleet.run(envelope(order_v2("ORD-110")))
    fleet.deliver(timeout=5)

    [dead] = fleet.dead_letters()
    assert (dead["stage"], dead["error_type"]) == ("delivery", "DeliveryBudgetSpent")
    assert "delivery budget of 1 s spent" in dead["error_message"]
    assert "answered 504" in dead["error_message"]
    assert "503" not in dead["error_message"] and "502" not in dead["error_message"]
    assert dead["attempts"] == len(erp.requests) >= 3
    assert dead["first_failed_at"] < dead["last_failed_at"]
    assert list(fleet.orders()) == ["ORD-110"]


def test_an_event_older_than_the_flows_max_age_is_dead_lettered_as_expired_and_not_applied(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    assert fleet.settings.max_event_age_seconds == 3600
    stale = envelope(order_v2("ORD-111"), age=timedelta(hours=2))
    recent = envelope(order_v2("ORD-112"), age=timedelta(minutes=50))

    fleet.run(stale, recent)

    [dead] = fleet.dead_letters()
    assert (dead["stage"], dead["attempts"], dead["message_id"]) == ("expired", 1, message_id_of(stale))
    assert "2.0 h ago" in dead["error_message"]
    assert list(fleet.orders()) == ["ORD-112"]
    assert list(erp.applied) == ["order-export:ORD-112"]


def test_a_late_copy_of_an_event_applied_in_time_is_a_duplicate_not_a_dead_letter(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    fleet.run(envelope(order_v2("ORD-113"), age=timedelta(minutes=50)))
    fleet.run(envelope(order_v2("ORD-113"), age=timedelta(hours=3)))

    assert fleet.dead_letters() == []
    assert (fleet.tally("processed"), fleet.tally("duplicate")) == (1, 1)
    assert list(erp.applied) == ["order-export:ORD-113"]


def test_a_failing_message_does_not_hold_up_the_messages_behind_it(
    fleet: FleetRun, erp: FakeDownstream, faults: PortFaults
) -> None:
    faults.responder = lambda _path, payload, _key, _attempt: 503 if payload["order_id"] == "ORD-STUCK" else 200
    good = [f"ORD-12{n}" for n in range(5)]

    fleet.run(
        b"\x00 not json",
        envelope(order_v2("ORD-STUCK")),
        *(envelope(order_v2(order_id, [("MUG-BLUE", 1)])) for order_id in good),
    )

    assert sorted(fleet.orders()) == good
    assert sorted(erp.applied) == [f"order-export:{order_id}" for order_id in good]
    assert fleet.reserved("MUG-BLUE", "BER-1") == 5
    assert sorted(d["stage"] for d in fleet.dead_letters()) == ["decode", "handler"]
    assert fleet.tally("processed") == 5


def test_a_dead_letter_names_the_contract_version_and_keys_it_could_read(fleet: FleetRun, faults: PortFaults) -> None:
    faults.responder = by_attempt(400)
    body = envelope(order_v2("ORD-113"))

    fleet.run(body)

    [dead] = fleet.dead_letters()
    published = json.loads(body)
    assert (dead["flow"], dead["queue"]) == ("orders", "orders.XQ")
    assert (dead["contract"], dead["version"]) == ("order.created", 2)
    assert (dead["correlation_id"], dead["producer"]) == (published["correlation_id"], "storefront")
    assert dead["status"] == "open"
    assert dead["fingerprint"]
    assert "PermanentError" in dead["traceback"]


def test_a_failing_message_is_timed_too_so_latency_and_lag_do_not_go_blank_during_an_outage(
    fleet: FleetRun, faults: PortFaults
) -> None:
    def observed(metric: str) -> float:
        return METRICS.get_sample_value(f"{metric}_count", {"flow": "orders"}) or 0.0

    before = {metric: observed(metric) for metric in ("flowfleet_handler_seconds", "flowfleet_event_lag_seconds")}
    faults.responder = by_attempt(400)

    fleet.run(envelope(order_v2("ORD-114")))

    assert [dead["stage"] for dead in fleet.dead_letters()] == ["handler"]
    assert {metric: observed(metric) - count for metric, count in before.items()} == {
        "flowfleet_handler_seconds": 1,
        "flowfleet_event_lag_seconds": 1,
    }


def test_an_applied_order_wakes_the_relay_of_the_systems_it_recorded_deliveries_for_only(fleet: FleetRun) -> None:
    wakeup = fleet.fleet.wakeup
    before = {system: wakeup.generation(system) for system in ("erp", "channels", "payments", "notify")}

    fleet.run(envelope(order_v2("ORD-150", [("MUG-BLUE", 1)])))

    nudged = {system for system, seen in before.items() if wakeup.generation(system) != seen}
    assert nudged == {"erp", "channels"}, "the export and the availability; no payment or notification was recorded"
