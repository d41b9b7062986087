"""A Dramatiq consumer for RabbitMQ that reads plain envelopes and can hand a message back.

Compared with Dramatiq's own consumer it passes the delivery's headers to the ingress step (for
the broker's delivery count), never drops an undecodable body, requeues instead of acking a
message whose retry or dead letter could not be published, and acks flow queues in batches
(workers.messaging.ack_batch) instead of waking the connection's thread once per message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from threading import Event
from typing import Any

import pika
import pika.exceptions
from dramatiq import Consumer, Message
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed

from workers.messaging.ack_batch import ACK_INTERVAL_S, AckBatch

logger = logging.getLogger("flowfleet.consumer")

_AMQP_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)

MessageFactory = Callable[[str, dict[str, Any] | None, bytes], Message[Any]]


class DeliveredMessage(MessageProxy):
    """A message with the AMQP delivery it came from: the delivery tag is only valid on `source`."""

    def __init__(self, message: Message[Any], tag: int, source: object = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.source = source

    def __str__(self) -> str:
        """Identity only: Dramatiq logs messages by str(), and bodies carry personal data."""
        return f"{self.actor_name}/{self.message_id}"

    __repr__ = __str__


class FleetConsumer(Consumer):
    """Consumes one queue; `to_message` turns each delivery into the Dramatiq message to run."""

    def __init__(
        self,
        parameters: pika.URLParameters,
        queue_name: str,
        prefetch: int,
        timeout_ms: int,
        to_message: MessageFactory,
    ) -> None:
        self.queue_name = queue_name
        self.to_message = to_message
        try:
            self.connection = pika.BlockingConnection(parameters)
            self.channel = self.connection.channel()
            self.channel.basic_qos(prefetch_count=prefetch)
            self.iterator = self.channel.consume(queue_name, inactivity_timeout=timeout_ms / 1000)
        except _AMQP_ERRORS as error:
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]  # untyped in Dramatiq
        # A delay queue holds each message until its eta: one held for minutes would stop every ack
        # behind it, so its messages are acked one by one, as they are few (retries).
        self.acks: AckBatch | None = None
        if queue_name != dq_name(queue_name):
            self.acks = AckBatch(self.channel, self._settle, batch=ack_batch_size(prefetch), interval=ACK_INTERVAL_S)

    def __next__(self) -> DeliveredMessage | None:
        try:
            method, properties, body = next(self.iterator)
        except (AssertionError, *_AMQP_ERRORS) as error:
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]  # untyped in Dramatiq
        if method is None:
            return None
        message = self.to_message(self.queue_name, properties.headers, body)
        if self.acks is not None:
            self.acks.delivered(method.delivery_tag)
        return DeliveredMessage(message, method.delivery_tag, source=self.channel)

    def ack(self, message: MessageProxy) -> None:
        """Called once the message's effect, retry or dead letter is durable (Dramatiq's post-processing)."""
        assert isinstance(message, DeliveredMessage)
        if not self._owns(message):
            return
        if message.options.get("flowfleet_requeue"):
            self._alone(message.tag, partial(self.channel.basic_nack, message.tag, requeue=True))
        elif self.acks is not None:
            self.acks.ack(message.tag)
        else:
            self._settle(partial(self.channel.basic_ack, message.tag))

    def nack(self, message: MessageProxy) -> None:
        """Reject to the queue's dead-letter queue (used by Dramatiq for messages to unknown actors)."""
        assert isinstance(message, DeliveredMessage)
        if self._owns(message):
            self._alone(message.tag, partial(self.channel.basic_nack, message.tag, requeue=False))

    def _alone(self, tag: int, operation: Callable[[], None]) -> None:
        if self.acks is not None:
            self.acks.settle_alone(tag, operation)
        else:
            self._settle(operation)

    def _owns(self, message: DeliveredMessage) -> bool:
        """A message delivered on a channel that has since been replaced is redelivered by the broker.

        Its tag must not be settled on the new channel, where the same number names another message.
        """
        if message.source is self.channel:
            return True
        logger.info("not settling %s: its channel was replaced; the broker redelivers it", message)
        return False

    def requeue(self, messages: Any) -> None:
        """Unacked messages return to the queue when the channel closes; nothing to do."""

    def _settle(self, operation: Callable[[], None]) -> None:
        try:
            self.connection.add_callback_threadsafe(operation)
        except _AMQP_ERRORS as error:
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]  # untyped in Dramatiq

    def close(self) -> None:
        try:
            flushed = Event()
            if self.acks is not None:
                self.connection.add_callback_threadsafe(self.acks.flush)
            self.connection.add_callback_threadsafe(flushed.set)
            while not flushed.is_set():
                self.connection.sleep(0.01)
            self.channel.close()
            self.connection.close()
        except (pika.exceptions.ConnectionWrongStateError, AssertionError, *_AMQP_ERRORS):
            logger.debug("consumer connection was already closed", exc_info=True)


def ack_batch_size(prefetch: int) -> int:
    """Deliveries per multiple ack: RabbitMQ's guidance is every 5-10% of the prefetch window."""
    return max(1, prefetch // 10)
