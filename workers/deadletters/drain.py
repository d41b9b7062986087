"""Moves dead letters from the broker's `<queue>.XQ` queues into the SQL archive, acking only after commit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta

import pika
import pika.exceptions
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from workers.deadletters.parked_expiry import dead_letter_overdue
from workers.messaging.dead_letters import archive_record, unreadable_record
from workers.messaging.ingress import json_safe_headers
from workers.messaging.memory_broker import MemoryBroker
from workers.observability.metrics import replays_total
from workers.store.archive.records import archive, is_linked_copy

logger = logging.getLogger("flowfleet.drain")

#: Errors that mean the database cannot take anything now: the dead letter waits in its queue.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
#: How often the drain looks for parked events past their limit.
PARKED_CHECK_SECONDS = 60.0
#: How long to wait before trying again when the database is unavailable.
DB_RETRY_SECONDS = 2.0


def store(
    engine: Engine,
    flow: str,
    queue: str,
    headers: Mapping[str, object] | None,
    body: bytes,
    *,
    delivery_limits: Mapping[str, int] | None = None,
) -> int | None:
    """Archive one dead letter in its own transaction; raise only if the database is unavailable.

    A replayed copy that failed again is linked to its replay there; it is counted as `failed_again`.
    """
    safe_headers = json_safe_headers(headers or {})
    record = archive_record(flow, queue, safe_headers, body, delivery_limits)
    try:
        with engine.begin() as connection:
            new_id = archive(connection, record)
            linked = new_id is not None and record["replay_of"] is not None and is_linked_copy(connection, new_id)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception as error:
        # Not the database's fault: this record cannot be stored as read. Keeping it out would block
        # every dead letter behind it in the queue, so it is kept as it came, with the reason.
        logger.exception("dead letter from %s could not be archived as read; archiving it raw", queue)
        with engine.begin() as connection:
            return archive(connection, unreadable_record(flow, queue, safe_headers, body, error))
    if linked:
        replays_total.labels(flow, "failed_again").inc()
    return new_id


class ArchiveDrain(threading.Thread):
    """A background consumer of every flow's dead-letter queue; stops when `stop()` is called."""

    def __init__(
        self,
        parameters: pika.URLParameters,
        queues: Mapping[str, str],
        engine: Engine,
        delivery_limits: Mapping[str, int],
        *,
        parked_limit: timedelta | None = None,
        flow_queues: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name="flowfleet-drain", daemon=True)
        self.parked_limit = parked_limit
        self.flow_queues = dict(flow_queues or {})  # flow -> work queue
        self._next_parked_check = 0.0
        self.parameters = parameters
        self.queues = dict(queues)  # dead-letter queue -> flow
        self.engine = engine
        self.delivery_limits = dict(delivery_limits)  # work queue -> x-delivery-limit
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._consume()
            except (pika.exceptions.AMQPError, OSError):
                logger.warning("dead-letter drain lost its broker connection; reconnecting", exc_info=True)
                self._stopping.wait(DB_RETRY_SECONDS)
            except Exception:
                # The drain must outlive any surprise: dead letters wait in their queue meanwhile.
                logger.exception("dead-letter drain failed; starting over")
                self._stopping.wait(DB_RETRY_SECONDS)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(self.parameters)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=50)
            while not self._stopping.is_set():
                drained = sum(self._drain_queue(channel, queue, flow) for queue, flow in self.queues.items())
                if drained == 0:
                    self._expire_parked()
                    connection.sleep(0.5)
        finally:
            if connection.is_open:
                connection.close()

    def _drain_queue(self, channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, flow: str) -> int:
        count = 0
        while not self._stopping.is_set():
            method, properties, body = channel.basic_get(queue)
            if method is None:
                return count
            try:
                store(self.engine, flow, queue, properties.headers, body, delivery_limits=self.delivery_limits)
            except Exception:
                # The database is unavailable (or, after the raw fallback, refused even that): wait and retry.
                logger.warning("archive unavailable; dead letter left in %s", queue, exc_info=True)
                channel.basic_nack(method.delivery_tag, requeue=True)
                self._stopping.wait(DB_RETRY_SECONDS)
                return count
            channel.basic_ack(method.delivery_tag)
            count += 1
        return count

    def _expire_parked(self) -> None:
        """At most once a minute: parked events past their limit become dead letters naming their parent."""
        if self.parked_limit is None or time.monotonic() < self._next_parked_check:
            return
        self._next_parked_check = time.monotonic() + PARKED_CHECK_SECONDS
        try:
            created = dead_letter_overdue(self.engine, limit=self.parked_limit, queues=self.flow_queues)
        except DATABASE_UNAVAILABLE:
            logger.warning("archive unavailable; parked events checked later", exc_info=True)
            return
        if created:
            logger.warning("%d parked event(s) waited too long and were dead-lettered", len(created))


def drain_memory(broker: MemoryBroker, engine: Engine, flows: Mapping[str, str]) -> int:
    """Drain the in-memory broker's dead-letter queues (the demo's twin of ArchiveDrain)."""
    count = 0
    for queue, flow in flows.items():
        pending = broker.dead_letter_queues[queue]
        while pending:
            body, headers = pending[0]
            store(engine, flow, queue, headers, body)
            pending.pop(0)
            count += 1
    return count
