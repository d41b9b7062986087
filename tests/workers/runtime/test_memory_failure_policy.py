"""The failure policy's traps: a retry or dead letter the broker did not take hands the message back."""

from __future__ import annotations

from threading import Lock
from typing import Any

import pytest
from dramatiq import Message
from sqlalchemy.exc import OperationalError

from tests.support.envelopes import envelope, message_id_of, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRun, FleetRunner
from workers.deadletters.drain import drain_memory
from workers.delivery.fake import FakeDownstream
from workers.messaging.ingress import DELIVERY_COUNT_HEADER
from workers.messaging.memory_broker import MemoryBroker


class RecordingBroker(MemoryBroker):
    """A MemoryBroker that records every delivery it hands a consumer, and can fail an operation once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deliveries: list[tuple[str, dict[str, Any]]] = []
        self.refusals = 0
        self._once = Lock()

    def message_for(self, queue_name: str, headers: dict[str, Any] | None, body: bytes) -> Message[Any]:
        self.deliveries.append((queue_name, dict(headers or {})))
        return super().message_for(queue_name, headers, body)

    def first_time(self) -> bool:
        """True exactly once, whichever worker thread asks first."""
        with self._once:
            self.refusals += 1
            return self.refusals == 1

    def redeliveries(self, queue_name: str) -> list[dict[str, Any]]:
        """Deliveries the broker handed out again after a consumer gave the message back."""
        return [h for q, h in self.deliveries if q == queue_name and h.get(DELIVERY_COUNT_HEADER, 0) >= 1]


class RetryEnqueueFailsOnce(RecordingBroker):
    """Loses its connection the first time a delayed retry is published."""

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        if delay is not None and self.first_time():
            raise ConnectionError("connection lost while publishing a retry")
        return super().enqueue(message, delay=delay)


class DeadLetterFailsOnce(RecordingBroker):
    """Loses its connection the first time a dead letter is published: the dead letter is not stored."""

    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None:
        if self.first_time():
            raise ConnectionError("connection lost while publishing a dead letter")
        super().dead_letter(queue_name, body, headers)


class DeadLetterConfirmLostOnce(RecordingBroker):
    """Stores the first dead letter but loses the publisher confirm, so the publish raises anyway."""

    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None:
        super().dead_letter(queue_name, body, headers)
        if self.first_time():
            raise ConnectionError("connection lost before the publisher confirm arrived")


class UnreachableArchive:
    """An engine whose database is down: every transaction fails to begin."""

    def begin(self) -> Any:
        raise OperationalError("BEGIN", {}, ConnectionRefusedError("database is down"))


def test_a_retry_that_cannot_be_enqueued_hands_the_message_back_and_it_is_applied_once(
    fleet_runner: FleetRunner, erp: FakeDownstream, faults: PortFaults
) -> None:
    faults.responder = lambda _path, _payload, _key, attempt: 503 if attempt == 1 else 200
    fleet = fleet_runner(RetryEnqueueFailsOnce)
    broker = fleet.broker
    assert isinstance(broker, RetryEnqueueFailsOnce)

    fleet.run(envelope(order_v2("ORD-200", [("TEE-RED-M", 1)])))

    assert broker.refusals >= 1
    assert len(broker.redeliveries("orders")) == 1, "the message must go back to its queue, not be acked"
    assert [status for *_, status in faults.requests] == [503, 200]
    assert list(erp.applied) == ["order-export:ORD-200"]
    assert list(fleet.orders()) == ["ORD-200"]
    assert fleet.reserved("TEE-RED-M", "BER-1") == 1
    assert (fleet.tally("processed"), fleet.tally("retried"), fleet.tally("dead_lettered")) == (1, 0, 0)
    assert fleet.dead_letters() == []


def _refused_by_erp() -> bytes:
    return envelope(order_v2("ORD-201"))


def _not_json() -> bytes:
    return b'{"message_id": "m-cut", "data": {"order_id": "ORD-202"'


@pytest.mark.parametrize(
    ("build", "stage"), [(_refused_by_erp, "handler"), (_not_json, "decode")], ids=["erp-400", "not-json"]
)
def test_a_dead_letter_that_cannot_be_published_hands_the_message_back_and_it_is_archived_once(
    fleet_runner: FleetRunner, faults: PortFaults, build: Any, stage: str
) -> None:
    faults.responder = lambda *_: 400
    fleet = fleet_runner(DeadLetterFailsOnce)
    broker = fleet.broker
    assert isinstance(broker, DeadLetterFailsOnce)
    body = build()

    fleet.run(body)

    assert broker.refusals >= 1
    assert len(broker.redeliveries("orders")) == 1, "the message must go back to its queue, not be acked"
    [dead] = fleet.dead_letters()
    assert (dead["stage"], dead["body"]) == (stage, body)
    assert fleet.tally("dead_lettered") == 1
    assert fleet.orders() == {}
    assert broker.dead_letter_queues.get("orders.XQ", []) == []


def test_an_exhausted_retry_whose_dead_letter_cannot_be_published_is_still_archived_once(
    fleet_runner: FleetRunner, erp: FakeDownstream, faults: PortFaults
) -> None:
    faults.responder = lambda *_: 503
    fleet = fleet_runner(DeadLetterFailsOnce)

    fleet.run(envelope(order_v2("ORD-203")))

    [dead] = fleet.dead_letters()
    assert dead["stage"] == "handler"
    assert "retry budget exhausted" in dead["error_message"]
    assert fleet.tally("dead_lettered") == 1
    assert list(erp.applied) == []


def test_a_dead_letter_whose_confirm_was_lost_is_archived_once_after_redelivery(
    fleet_runner: FleetRunner, faults: PortFaults
) -> None:
    faults.responder = lambda *_: 400
    fleet = fleet_runner(DeadLetterConfirmLostOnce)
    body = envelope(order_v2("ORD-204"))

    fleet.run(body)

    assert [d["message_id"] for d in fleet.dead_letters()] == [message_id_of(body)]


def test_dead_letters_stay_in_the_broker_when_the_archive_is_unreachable(fleet: FleetRun) -> None:
    fleet.publish(b"not json")
    fleet.publish(b"not json either")
    fleet.join()
    assert len(fleet.broker.dead_letter_queues["orders.XQ"]) == 2

    with pytest.raises(OperationalError):
        drain_memory(fleet.broker, UnreachableArchive(), fleet.fleet.dead_letter_queues())  # type: ignore[arg-type]

    assert len(fleet.broker.dead_letter_queues.get("orders.XQ", [])) == 2
    assert fleet.settle() == 2
