"""What the RabbitMQ broker and its in-memory twin share: ingress per queue, and enqueue through publish."""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

from dramatiq import Broker, Message, Middleware
from dramatiq.common import dq_name, q_name

from workers.messaging.ingress import DRAMATIQ_FORMAT, FORMAT_HEADER, message_from_delivery


class BrokerBase(Broker):
    """A Dramatiq broker whose queues carry plain envelopes and whose own messages are marked."""

    def __init__(self, *, middleware: list[Middleware] | None = None) -> None:
        super().__init__(middleware=middleware)
        self._actor_by_queue: dict[str, str] = {}

    def declare_actor(self, actor: Any) -> None:
        super().declare_actor(actor)
        self._actor_by_queue[actor.queue_name] = actor.actor_name

    def get_declared_delay_queues(self) -> set[str]:
        return set(self.delay_queues)

    def message_for(self, queue_name: str, headers: dict[str, Any] | None, body: bytes) -> Message[Any]:
        """The Dramatiq message for one delivery on `queue_name` (see workers.messaging.ingress)."""
        return message_from_delivery(queue_name, self._actor_by_queue.get(q_name(queue_name), ""), headers, body)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Publish a Dramatiq message (a delayed retry, usually), confirmed; raise if it was not taken."""
        queue_name = message.queue_name
        if delay is not None:
            queue_name = dq_name(queue_name)
            message = message.copy(queue_name=queue_name, options={"eta": int(time.time() * 1000) + delay})
        self.emit_before("enqueue", message, delay)
        self.publish("", queue_name, message.encode(), {FORMAT_HEADER: DRAMATIQ_FORMAT})
        self.emit_after("enqueue", message, delay)
        return message

    @abstractmethod
    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None:
        """Put a dead letter on the queue's dead-letter queue; raise if it was not taken."""

    @abstractmethod
    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish raw bytes; raise if the broker did not take them."""
