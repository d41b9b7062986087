"""The RabbitMQ broker: Dramatiq's, with confirmed publishes, flowfleet's topology and plain-envelope ingress."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pika
import pika.exceptions
from dramatiq import Middleware
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed

from workers.messaging.broker_base import BrokerBase
from workers.messaging.consumer import FleetConsumer
from workers.messaging.topology import connection_parameters

logger = logging.getLogger("flowfleet.broker")

PUBLISH_ATTEMPTS = 4


class FleetBroker(BrokerBase):
    """Publishes every message with publisher confirms and `mandatory`, so nothing is silently lost.

    Queues are not declared here: `flowfleet topology apply` (run by the worker at start) owns them,
    so an enqueue to a queue that does not exist fails loudly instead of creating a wrong one.
    """

    def __init__(self, url: str, *, middleware: list[Middleware] | None = None) -> None:
        super().__init__(middleware=middleware)
        self.parameters = connection_parameters(url)
        self.queues: set[str] = set()
        self._local = threading.local()
        self._connections: set[pika.BlockingConnection] = set()

    # -- declaration -----------------------------------------------------------------------------
    def declare_queue(self, queue_name: str) -> None:
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)
            self.delay_queues.add(dq_name(queue_name))
            self.emit_after("declare_delay_queue", dq_name(queue_name))

    def get_declared_queues(self) -> set[str]:
        return set(self.queues)

    # -- consuming -------------------------------------------------------------------------------
    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> FleetConsumer:
        return FleetConsumer(self.parameters, queue_name, prefetch, timeout, self.message_for)

    # -- publishing ------------------------------------------------------------------------------
    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish a dead letter to the queue's dead-letter queue, confirmed."""
        self.publish("", xq_name(queue_name), body, headers)

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        """Persistent, mandatory, confirmed publish; reconnects on a lost connection; raises if refused."""
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json", headers=headers
        )
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                self._channel().basic_publish(exchange, routing_key, body, properties, mandatory=True)
                return
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                raise ConnectionClosed(f"broker refused the message for {routing_key!r}: {error!r}") from None  # type: ignore[no-untyped-call]  # untyped in Dramatiq
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as error:
                self._reset()
                if attempt == PUBLISH_ATTEMPTS:
                    raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]  # untyped in Dramatiq
                time.sleep(0.2 * attempt)

    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.is_open:
            connection = getattr(self._local, "connection", None)
            if connection is None or not connection.is_open:
                connection = self._local.connection = pika.BlockingConnection(self.parameters)
                self._connections.add(connection)
            channel = self._local.channel = connection.channel()
            channel.confirm_delivery()
        return channel

    def _reset(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.channel = None
        self._local.connection = None
        if connection is not None:
            self._close_connection(connection)

    def _close_connection(self, connection: pika.BlockingConnection) -> None:
        self._connections.discard(connection)
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                logger.debug("closing a broken connection failed", exc_info=True)

    def close(self) -> None:
        """Close every publishing connection (each thread opened its own)."""
        for connection in list(self._connections):
            self._close_connection(connection)

    def flush(self, queue_name: str) -> None:
        channel = self._channel()
        for name in (queue_name, dq_name(queue_name), xq_name(queue_name)):
            channel.queue_purge(name)

    def flush_all(self) -> None:
        for queue_name in self.queues:
            self.flush(queue_name)

    def join(self, queue_name: str, *, timeout: int | None = None) -> None:
        raise NotImplementedError("join is for tests on the memory broker; watch queue depth instead")
