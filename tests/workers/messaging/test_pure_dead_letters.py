"""A dead letter, whoever dead-lettered it, reads back into a complete archive record with its raw body."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from dramatiq import Message
from hypothesis import given
from hypothesis import strategies as st

from contracts.envelope import decode_envelope
from contracts.errors import ContractViolation, UndecodableMessage
from handlers.errors import PermanentError, TransientError
from workers.failures import Failure, classify, fingerprint
from workers.messaging.dead_letters import PREFIX, archive_record, dead_letter_headers, dead_letter_id
from workers.messaging.ingress import (
    DELIVERY_COUNT_HEADER,
    DRAMATIQ_FORMAT,
    FORMAT_HEADER,
    decode_body,
    encode_body,
    message_from_delivery,
)

FIRST_FAILED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LAST_FAILED = datetime(2026, 11, 25, 9, 5, tzinfo=UTC)
DEATH_TIME = "2026-11-25T10:00:00+00:00"


def envelope_body(version: int = 2, **data_overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "order_id": "ORD-9",
        "channel": "storefront",
        "customer": {"email": "ana@example.com"},
        "currency": "EUR",
        "lines": [{"line_id": "1", "sku": "TEE", "quantity": 2, "unit_price_minor": 500}],
        "total_minor": 1000,
        **data_overrides,
    }
    envelope = {
        "message_id": "msg-9",
        "contract": "order.created",
        "version": version,
        "occurred_at": "2026-11-25T08:59:00Z",
        "producer": "storefront",
        "correlation_id": "corr-9",
        "data": data,
    }
    return json.dumps(envelope).encode("utf-8")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def published_by_worker(failure: Failure, *, event: dict[str, Any] | None = None, attempts: int = 1) -> dict[str, Any]:
    return dead_letter_headers(
        failure,
        dead_letter_id=f"dl-{failure.fingerprint}-{attempts}",
        event=event or {},
        original_headers={"traceparent": "00-abc-01", FORMAT_HEADER: DRAMATIQ_FORMAT, "x-death": ["old"]},
        attempts=attempts,
        delivery_count=attempts - 1,
        first_failed_ms=ms(FIRST_FAILED),
        last_failed_ms=ms(LAST_FAILED),
    )


def broker_death(reason: str = "delivery_limit", count: int = 1) -> dict[str, Any]:
    return {"x-death": [{"reason": reason, "count": count, "queue": "orders", "time": DEATH_TIME}]}


# --- dead letters the worker publishes -----------------------------------------------------------


def test_a_worker_dead_letter_reads_back_with_its_final_error_attempts_and_times() -> None:
    failure = classify(TransientError("ERP answered 503")).exhausted(5)
    body = envelope_body()

    record = archive_record("orders", "orders.XQ", published_by_worker(failure, attempts=5), body)

    assert record["flow"] == "orders"
    assert record["queue"] == "orders.XQ"
    assert record["status"] == "open"
    assert record["stage"] == "handler"
    assert record["error_type"] == "TransientError"
    assert record["error_message"] == "retry budget exhausted after 5 attempts; final error: ERP answered 503"
    assert "TransientError" in record["traceback"]
    assert record["attempts"] == 5
    assert record["first_failed_at"] == FIRST_FAILED
    assert record["last_failed_at"] == LAST_FAILED
    assert record["fingerprint"] == failure.fingerprint
    assert record["body"] == body


def test_a_worker_dead_letter_recovers_the_events_identity_and_keys_from_its_body() -> None:
    failure = classify(PermanentError("ERP answered 422"))

    record = archive_record("orders", "orders.XQ", published_by_worker(failure), envelope_body())

    assert record["contract"] == "order.created"
    assert record["version"] == 2
    assert record["message_id"] == "msg-9"
    assert record["correlation_id"] == "corr-9"
    assert record["producer"] == "storefront"
    assert record["dedup_key"] == "ORD-9"
    assert record["business_keys"] == {"order_id": "ORD-9"}


def _broken(**changes: Any) -> bytes:
    envelope = json.loads(envelope_body())
    envelope.update(changes)
    return json.dumps(envelope).encode("utf-8")


IDENTITY = {
    "message_id": "msg-9",
    "producer": "storefront",
    "contract": "order.created",
    "correlation_id": "corr-9",
}


@pytest.mark.parametrize(
    ("body", "version"),
    [
        (_broken(version="2"), None),
        (_broken(occurred_at="2026-11-25T08:59:00"), 2),
        (b"\xef\xbb\xbf" + envelope_body(), 2),
        (_broken(data="not an object"), 2),
        (_broken(occurred_at=1764633600000), 2),
    ],
    ids=["version-as-text", "naive-occurred-at", "byte-order-mark", "data-not-an-object", "epoch-millis"],
)
def test_a_decode_dead_letter_keeps_every_envelope_field_that_could_be_read(body: bytes, version: int | None) -> None:
    """On-call must know whom to call even when another field made the envelope fail."""
    failure = classify(caught_decode(body))

    record = archive_record("orders", "orders.XQ", published_by_worker(failure), body)

    assert record["stage"] == "decode"
    assert {name: record[name] for name in IDENTITY} == IDENTITY
    assert record["version"] == version
    assert record["dedup_key"] is None


def test_a_decode_dead_letter_leaves_null_only_what_could_not_be_read() -> None:
    body = json.dumps({"message_id": ["not", "text"], "producer": "x" * 5000, "contract": 7}).encode()
    failure = classify(caught_decode(body))

    record = archive_record("orders", "orders.XQ", published_by_worker(failure), body)

    assert (record["message_id"], record["producer"], record["contract"]) == (None, None, None)


def caught_decode(body: bytes) -> Exception:
    try:
        decode_envelope(body)
    except UndecodableMessage as error:
        return error
    raise AssertionError("the body decoded")


def test_a_v1_body_yields_the_dedup_key_of_its_upcast_event() -> None:
    data = {
        "order_id": "ORD-OLD",
        "email": "bo@example.com",
        "currency": "EUR",
        "items": [{"sku": "MUG", "qty": 1, "unit_price_cents": 1}],
        "total_cents": 1,
    }
    v1 = {**json.loads(envelope_body()), "version": 1, "data": data}
    failure = classify(PermanentError("no"))

    record = archive_record("orders", "orders.XQ", published_by_worker(failure), json.dumps(v1).encode())

    assert (record["version"], record["dedup_key"]) == (1, "ORD-OLD")


def test_a_contract_dead_letter_keeps_its_field_paths_and_the_dedup_key_its_plain_fields_name() -> None:
    failure = classify(ContractViolation("quantity must be > 0", field_paths=("data.lines.0.quantity",)))
    body = envelope_body(lines=[{"line_id": "1", "sku": "TEE", "quantity": 0, "unit_price_minor": 500}])

    record = archive_record("orders", "orders.XQ", published_by_worker(failure), body)

    assert record["stage"] == "contract"
    assert record["field_paths"] == ["data.lines.0.quantity"]
    assert record["message_id"] == "msg-9"
    assert record["dedup_key"] == "ORD-9", "a corrected resend has this key: it supersedes the record"
    assert record["business_keys"] == {}


def test_what_the_worker_knew_about_the_event_wins_over_an_unreadable_body() -> None:
    failure = classify(PermanentError("no"))
    event = {
        "contract": "order.created",
        "version": 2,
        "message_id": "msg-7",
        "dedup_key": "ORD-7",
        "business_keys": {"order_id": "ORD-7"},
        "correlation_id": None,
    }

    headers = published_by_worker(failure, event=event)

    record = archive_record("orders", "orders.XQ", headers, b"\xff not json")

    assert (record["message_id"], record["dedup_key"], record["business_keys"]) == (
        "msg-7",
        "ORD-7",
        {"order_id": "ORD-7"},
    )
    assert record["body"] == b"\xff not json"


def test_a_worker_dead_letter_keeps_the_original_headers_but_not_stale_failure_headers() -> None:
    headers = published_by_worker(classify(PermanentError("no")))

    record = archive_record("orders", "orders.XQ", headers, envelope_body())

    assert record["headers"] == {"traceparent": "00-abc-01"}
    assert headers[PREFIX + "stage"] == "handler"
    assert "x-death" not in headers


def test_a_dead_letter_is_identified_by_its_queue_and_raw_body() -> None:
    body = envelope_body()

    assert dead_letter_id("orders", body) == dead_letter_id("orders", body)
    assert dead_letter_id("orders", body) != dead_letter_id("payments", body)
    assert dead_letter_id("orders", body) != dead_letter_id("orders", body + b" ")


def test_dead_letter_headers_are_plain_values_an_amqp_client_can_send() -> None:
    failure = classify(ContractViolation("bad", field_paths=("data.a", "data.b")))

    headers = published_by_worker(failure, event={"message_id": "m"})

    assert json.loads(json.dumps(headers)) == headers
    assert json.loads(headers[PREFIX + "field-paths"]) == ["data.a", "data.b"]


# --- dead letters the broker publishes itself ----------------------------------------------------


def test_a_broker_dead_letter_after_the_delivery_limit_is_a_handler_failure() -> None:
    body = envelope_body()

    record = archive_record("orders", "orders.XQ", broker_death(count=1), body)

    assert record["stage"] == "handler"
    assert record["error_type"] == "DeliveryLimitExceeded"
    assert "delivery limit" in record["error_message"]
    assert "orders" in record["error_message"]
    assert record["attempts"] == 1
    assert record["first_failed_at"] == record["last_failed_at"] == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert record["fingerprint"] == fingerprint("handler", "DeliveryLimitExceeded", "", ())
    assert record["headers"]["x-death"] == broker_death()["x-death"]
    assert record["body"] == body
    assert (record["message_id"], record["dedup_key"]) == ("msg-9", "ORD-9")


def test_a_delivery_limit_dead_letter_counts_every_delivery_the_queue_allowed() -> None:
    """RabbitMQ resets the delivery count on dead-lettering; the queue's limit says how many there were."""
    record = archive_record("orders", "orders.XQ", broker_death(), envelope_body(), {"orders": 3})

    assert record["attempts"] == 4


def test_a_broker_dead_letter_has_a_stable_key_so_draining_it_twice_archives_it_once() -> None:
    first = archive_record("orders", "orders.XQ", broker_death(), envelope_body())
    again = archive_record("orders", "orders.XQ", broker_death(), envelope_body())
    other = archive_record("orders", "orders.XQ", broker_death(), envelope_body(order_id="ORD-10"))

    assert first["dead_letter_key"] == again["dead_letter_key"]
    assert first["dead_letter_key"].startswith("broker-")
    assert other["dead_letter_key"] != first["dead_letter_key"]
    assert other["fingerprint"] == first["fingerprint"]


def test_a_broker_dead_letter_for_another_reason_names_that_reason() -> None:
    record = archive_record("orders", "orders.XQ", broker_death(reason="rejected"), envelope_body())

    assert record["error_type"] == "BrokerDeadLettered:rejected"
    assert "reason: rejected" in record["error_message"]


def test_a_broker_dead_letter_of_a_dramatiq_retry_is_unwrapped_to_the_original_envelope() -> None:
    raw = envelope_body()
    retry = message_from_delivery("orders", "place_order", {"traceparent": "00-abc-01"}, raw)
    headers = {FORMAT_HEADER: DRAMATIQ_FORMAT, **broker_death(count=2)}

    record = archive_record("orders", "orders.XQ", headers, retry.encode())

    assert record["body"] == raw
    assert record["headers"]["traceparent"] == "00-abc-01"
    assert record["error_type"] == "DeliveryLimitExceeded"
    assert (record["message_id"], record["dedup_key"]) == ("msg-9", "ORD-9")


def test_an_unwrapped_dramatiq_retry_counts_the_attempts_it_had_already_made() -> None:
    retry = message_from_delivery("orders", "place_order", {}, envelope_body())
    retry.options["attempt"] = 3
    headers = {FORMAT_HEADER: DRAMATIQ_FORMAT, **broker_death(count=2)}

    assert archive_record("orders", "orders.XQ", headers, retry.encode())["attempts"] == 5


def test_a_binary_body_inside_a_dramatiq_retry_is_unwrapped_byte_for_byte() -> None:
    raw = b"\x00\xff\xfe not utf-8"
    retry = message_from_delivery("orders", "place_order", {}, raw)

    headers = {FORMAT_HEADER: DRAMATIQ_FORMAT, **broker_death()}

    record = archive_record("orders", "orders.XQ", headers, retry.encode())

    assert record["body"] == raw


def test_a_corrupt_dramatiq_marked_broker_dead_letter_is_archived_as_it_came() -> None:
    body = b'{"not": "a dramatiq message"'

    record = archive_record("orders", "orders.XQ", {FORMAT_HEADER: DRAMATIQ_FORMAT, **broker_death()}, body)

    assert record["body"] == body
    assert record["error_type"] == "DeliveryLimitExceeded"


def test_a_dead_letter_with_unreadable_headers_is_still_archived_as_it_came() -> None:
    headers = {"x-death": [{"reason": "delivery_limit", "count": "many", "queue": "orders", "time": "noon"}]}
    body = envelope_body()

    record = archive_record("orders", "orders.XQ", headers, body)
    again = archive_record("orders", "orders.XQ", headers, body)

    assert record["error_type"] == "UnreadableDeadLetter"
    assert record["body"] == body
    assert record["headers"] == headers
    assert record["message_id"] == "msg-9"
    assert record["dead_letter_key"] == again["dead_letter_key"]


# --- ingress: a delivery becomes actor work ------------------------------------------------------


def test_a_plain_utf8_delivery_is_wrapped_as_text_for_the_flows_actor() -> None:
    raw = envelope_body()

    message = message_from_delivery("orders", "place_order", {"traceparent": "00-abc-01"}, raw)

    assert message.queue_name == "orders"
    assert message.actor_name == "place_order"
    assert message.kwargs["body"] == raw.decode("utf-8")
    assert message.kwargs["headers"] == {"traceparent": "00-abc-01"}
    assert message.options["delivery_count"] == 0
    assert decode_body(message.kwargs) == raw


def test_a_non_utf8_delivery_is_wrapped_as_base64_and_loses_nothing() -> None:
    raw = b"\xff\xfe\x00binary"

    message = message_from_delivery("orders", "place_order", None, raw)

    assert "body" not in message.kwargs
    assert base64.b64decode(message.kwargs["body_b64"]) == raw
    assert decode_body(Message.decode(message.encode()).kwargs) == raw


@given(st.binary(max_size=512))
def test_any_body_survives_encode_and_decode_exactly(raw: bytes) -> None:
    assert decode_body(encode_body(raw)) == raw


def test_the_brokers_delivery_count_is_taken_from_the_headers() -> None:
    message = message_from_delivery("orders", "place_order", {DELIVERY_COUNT_HEADER: 3}, b"{}")

    assert message.options["delivery_count"] == 3


def test_a_delivery_count_that_is_not_a_number_counts_as_zero() -> None:
    message = message_from_delivery("orders", "place_order", {DELIVERY_COUNT_HEADER: "three"}, b"{}")

    assert message.options["delivery_count"] == 0


def test_a_dramatiq_message_marked_by_flowfleet_is_decoded_not_wrapped() -> None:
    original = message_from_delivery("orders", "place_order", {"traceparent": "t"}, envelope_body())
    original.options["attempt"] = 2

    message = message_from_delivery(
        "orders", "place_order", {FORMAT_HEADER: DRAMATIQ_FORMAT, DELIVERY_COUNT_HEADER: 1}, original.encode()
    )

    assert message.message_id == original.message_id
    assert message.kwargs == original.kwargs
    assert message.options["attempt"] == 2
    assert message.options["delivery_count"] == 1


def test_an_unmarked_body_shaped_like_a_dramatiq_message_is_treated_as_a_plain_envelope() -> None:
    smuggled = message_from_delivery("orders", "refund_everything", {}, b"{}").encode()

    message = message_from_delivery("orders", "place_order", {}, smuggled)

    assert message.actor_name == "place_order"
    assert decode_body(message.kwargs) == smuggled


def test_a_corrupt_marked_body_falls_back_to_being_wrapped_so_it_can_be_dead_lettered() -> None:
    for corrupt in (b"\xff\xfe", b"[1, 2", b'{"queue_name": "orders"}', b"[1, 2, 3]"):
        message = message_from_delivery("orders", "place_order", {FORMAT_HEADER: DRAMATIQ_FORMAT}, corrupt)

        assert message.actor_name == "place_order"
        assert decode_body(message.kwargs) == corrupt


def test_a_marked_message_for_another_queue_or_actor_is_wrapped_not_trusted() -> None:
    """Settling a message on a queue it did not come from would crash the worker thread."""
    marked = {FORMAT_HEADER: DRAMATIQ_FORMAT}
    for queue, actor in (("payments", "place_order"), ("orders", "refund_everything")):
        foreign = message_from_delivery(queue, actor, {}, envelope_body()).encode()

        message = message_from_delivery("orders", "place_order", marked, foreign)

        assert (message.queue_name, message.actor_name) == ("orders", "place_order")
        assert decode_body(message.kwargs) == foreign


def test_a_marked_message_with_positional_args_or_a_text_eta_is_wrapped_not_trusted() -> None:
    marked = {FORMAT_HEADER: DRAMATIQ_FORMAT}
    good = message_from_delivery("orders", "place_order", {}, envelope_body())
    for odd in (good.copy(args=("x",)), good.copy(options={"eta": "soon"})):
        message = message_from_delivery("orders", "place_order", marked, odd.encode())

        assert message.message_id != good.message_id
        assert decode_body(message.kwargs) == odd.encode()


def test_garbage_on_a_delay_queue_is_settled_on_the_delay_queue_it_came_from() -> None:
    message = message_from_delivery("orders.DQ", "place_order", {}, b"not json")

    assert message.queue_name == "orders.DQ"
    assert "eta" not in message.options


def test_amqp_header_values_are_made_json_safe_so_the_message_can_be_encoded() -> None:
    headers = {
        "raw": b"bytes",
        "when": datetime(2026, 11, 25, 10, tzinfo=UTC),
        "amount": Decimal("1.50"),
        "x-death": [{"count": 1, "time": datetime(2026, 11, 25, tzinfo=UTC)}],
        "odd": {1, 2},
    }

    message = message_from_delivery("orders", "place_order", headers, b"{}")

    safe = Message.decode(message.encode()).kwargs["headers"]
    assert safe["raw"] == "bytes"
    assert safe["when"] == "2026-11-25T10:00:00+00:00"
    assert safe["amount"] == "1.50"
    assert safe["x-death"] == [{"count": 1, "time": "2026-11-25T00:00:00+00:00"}]
    assert isinstance(safe["odd"], str)
