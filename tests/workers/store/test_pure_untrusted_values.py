"""Whatever a publisher sends, the dead letter can be published, stored, and no forged retry holds a slot."""

from __future__ import annotations

import time
from typing import Any

import pika
from dramatiq import Message

from workers.messaging.dead_letters import amqp_safe
from workers.messaging.ingress import DRAMATIQ_FORMAT, FORMAT_HEADER, MAX_RETRY_DELAY_MS, message_from_delivery
from workers.store.fit import fit_json, fit_row, fit_text
from workers.store.tables import dead_letters


def encodes(headers: dict[str, Any]) -> bool:
    properties = pika.BasicProperties(headers=headers)
    return bool(properties.encode())


def test_headers_pika_cannot_encode_become_text_and_the_rest_stay_as_they_were() -> None:
    headers = {"price": 9.99, "huge": 2**70, "small": 7, "nested": {"ratio": 0.5, "ok": "yes"}, "flag": True}

    safe = amqp_safe(headers)

    assert safe == {
        "price": "9.99",
        "huge": str(2**70),
        "small": 7,
        "nested": {"ratio": "0.5", "ok": "yes"},
        "flag": True,
    }
    assert encodes(safe)


def test_text_loses_nul_and_lone_surrogates_and_is_cut_to_the_column_with_a_mark() -> None:
    assert fit_text("a\x00b") == "a\\x00b"
    assert fit_text("x\ud800y") == "x\\ud800y"
    assert fit_text("abcdef", 4) == "abc…"
    fit_text("\ud800").encode("utf-8")  # encodable now


def test_a_row_keeps_integers_in_its_columns_range_and_json_free_of_nan() -> None:
    row = fit_row(
        dead_letters,
        {"version": 2**31, "attempts": 2**40, "message_id": "m" * 500, "headers": {"n": float("nan"), "k\x00": "v"}},
    )

    assert row["version"] is None, "a nullable column takes NULL for a number it cannot hold"
    assert row["attempts"] == 2**31 - 1, "a required column takes the nearest bound"
    assert len(row["message_id"]) == 200
    assert row["headers"] == {"n": "nan", "k\\x00": "v"}
    assert fit_json([b"\xff", 1.5, None]) == ["\ufffd", 1.5, None]


def forged_retry(queue_name: str, eta: int) -> bytes:
    message: Message[Any] = Message(
        queue_name=queue_name,
        actor_name="orders",
        args=(),
        kwargs={"body": "{}", "headers": {}},
        options={"eta": eta},
        message_id="forged",
        message_timestamp=0,
    )
    return message.encode()


def test_a_marked_body_naming_another_queue_than_the_one_it_came_from_is_taken_as_plain_input() -> None:
    now = int(time.time() * 1000)

    taken = message_from_delivery("orders", "orders", {FORMAT_HEADER: DRAMATIQ_FORMAT}, forged_retry("orders.DQ", now))

    assert taken.message_id != "forged"
    assert taken.queue_name == "orders"
    assert "body" in taken.kwargs or "body_b64" in taken.kwargs


def test_a_marked_body_due_far_in_the_future_is_taken_as_plain_input_not_held_unacked() -> None:
    now = int(time.time() * 1000)
    marked = {FORMAT_HEADER: DRAMATIQ_FORMAT}

    on_flow_queue = message_from_delivery("orders", "orders", marked, forged_retry("orders", now + 3_600_000))
    on_delay_queue = message_from_delivery("orders.DQ", "orders", marked, forged_retry("orders.DQ", now + 10**12))
    genuine = message_from_delivery(
        "orders.DQ", "orders", marked, forged_retry("orders.DQ", now + MAX_RETRY_DELAY_MS // 2)
    )

    assert on_flow_queue.message_id != "forged"
    assert on_delay_queue.message_id != "forged"
    assert genuine.message_id == "forged", "a delay flowfleet could have set is still its own retry"
