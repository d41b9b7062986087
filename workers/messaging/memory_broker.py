"""The in-memory twin of the RabbitMQ broker, with the same ingress, routing and dead-letter queues.

It runs the embedded demo and the worker-layer unit tests: the same actors, middleware and failure
policy as production, without a server.
"""

from __future__ import annotations

import time
from collections import defaultdict
from queue import Empty, Queue
from threading import Lock
from typing import Any

from dramatiq import Consumer, Message, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name, q_name, xq_name

from workers.messaging.broker_base import BrokerBase
from workers.messaging.consumer import DeliveredMessage
from workers.messaging.ingress import DELIVERY_COUNT_HEADER

Delivery = tuple[bytes, dict[str, Any]]


class MemoryBroker(BrokerBase):
    """Topic routing by exact routing key, per-queue FIFO, and dead-letter lists per queue."""

    def __init__(self, *, routes: dict[str, tuple[str, ...]], middleware: list[Middleware] | None = None) -> None:
        super().__init__(middleware=middleware)
        self.queues: dict[str, Queue[Delivery]] = {}
        self.dead_letter_queues: dict[str, list[Delivery]] = defaultdict(list)
        self._bindings: dict[str, list[str]] = defaultdict(list)
        self._lock = Lock()
        for queue, keys in routes.items():
            for key in keys:
                self._bindings[key].append(queue)

    def declare_queue(self, queue_name: str) -> None:
        with self._lock:
            if queue_name in self.queues:
                return
            self.emit_before("declare_queue", queue_name)
            self.queues[queue_name] = Queue()
            self.queues[dq_name(queue_name)] = Queue()
        self.emit_after("declare_queue", queue_name)
        self.delay_queues.add(dq_name(queue_name))
        self.emit_after("declare_delay_queue", dq_name(queue_name))

    def get_declared_queues(self) -> set[str]:
        return {name for name in self.queues if name == q_name(name)}

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> Consumer:
        return MemoryConsumer(self, queue_name, timeout)

    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None:
        self.dead_letter_queues[xq_name(queue_name)].append((body, headers))

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        """Route like RabbitMQ: the default exchange by queue name, the topic exchange by binding."""
        targets = [routing_key] if exchange == "" else self._bindings.get(routing_key, [])
        if not targets or any(target not in self.queues for target in targets):
            raise LookupError(f"unroutable: no queue for {routing_key!r} on exchange {exchange!r}")
        for target in targets:
            self.queues[target].put((body, dict(headers)))

    def join(self, queue_name: str, *, timeout: int | None = None, settle_ms: int = 50) -> None:
        """Wait until the queue and its delay queue have been empty and idle for `settle_ms`."""
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        quiet_since: float | None = None
        while True:
            busy = any(self.queues[name].unfinished_tasks for name in (queue_name, dq_name(queue_name)))
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= settle_ms / 1000:
                return
            if deadline is not None and now > deadline:
                raise TimeoutError(f"queue {queue_name} did not drain in time")
            time.sleep(0.005)

    def flush(self, queue_name: str) -> None:
        for name in (queue_name, dq_name(queue_name)):
            while True:
                try:
                    self.queues[name].get_nowait()
                except Empty:
                    break
                self.queues[name].task_done()
        self.dead_letter_queues.pop(xq_name(queue_name), None)

    def flush_all(self) -> None:
        for name in self.get_declared_queues():
            self.flush(name)


class _MemoryDelivery(DeliveredMessage):
    def __init__(self, message: Message[Any], delivery: Delivery) -> None:
        super().__init__(message, tag=0)
        self.delivery = delivery


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, queue_name: str, timeout_ms: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.queue = broker.queues[queue_name]
        self.timeout = timeout_ms / 1000

    def __next__(self) -> DeliveredMessage | None:
        try:
            body, headers = self.queue.get(timeout=self.timeout)
        except Empty:
            return None
        return _MemoryDelivery(self.broker.message_for(self.queue_name, headers, body), (body, headers))

    def ack(self, message: MessageProxy) -> None:
        assert isinstance(message, _MemoryDelivery)
        if message.options.get("flowfleet_requeue"):
            body, headers = message.delivery
            count = int(headers.get(DELIVERY_COUNT_HEADER, 0)) + 1
            self.queue.put((body, {**headers, DELIVERY_COUNT_HEADER: count}))
        self.queue.task_done()

    def nack(self, message: MessageProxy) -> None:
        assert isinstance(message, _MemoryDelivery)
        self.broker.dead_letter(self.queue_name, *message.delivery)
        self.queue.task_done()

    def requeue(self, messages: Any) -> None:
        for message in messages:
            self.queue.put(message.delivery)
            self.queue.task_done()
