"""Moves dead letters from the broker's `<queue>.XQ` queues into the SQL archive, acking only after commit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import NamedTuple

import pika
import pika.exceptions
from sqlalchemy import Connection, Engine
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


#: Dead letters archived in one transaction and acked with one `multiple` ack.
BATCH = 50


class DeadLetter(NamedTuple):
    """One dead letter as the broker handed it over."""

    flow: str
    queue: str
    headers: Mapping[str, object] | None
    body: bytes


def store_all(
    engine: Engine, letters: Sequence[DeadLetter], *, delivery_limits: Mapping[str, int] | None = None
) -> list[int | None]:
    """Archive dead letters in one transaction, one savepoint each; raise only if the database is unavailable.

    A record that cannot be stored as read rolls back to its savepoint alone and is archived raw, with the
    reason. A replayed copy that failed again is linked to its replay there; it is counted as `failed_again`
    once the transaction has committed.
    """
    ids: list[int | None] = []
    failed_again: list[str] = []
    with engine.begin() as connection:
        for letter in letters:
            new_id, linked = _archive_one(connection, letter, delivery_limits)
            ids.append(new_id)
            if linked:
                failed_again.append(letter.flow)
    for flow in failed_again:
        replays_total.labels(flow, "failed_again").inc()
    return ids


def _archive_one(
    connection: Connection, letter: DeadLetter, delivery_limits: Mapping[str, int] | None
) -> tuple[int | None, bool]:
    safe_headers = json_safe_headers(letter.headers or {})
    record = archive_record(letter.flow, letter.queue, safe_headers, letter.body, delivery_limits)
    try:
        with connection.begin_nested():
            new_id = archive(connection, record)
            linked = new_id is not None and record["replay_of"] is not None and is_linked_copy(connection, new_id)
            return new_id, linked
    except DATABASE_UNAVAILABLE:
        raise
    except Exception as error:
        # Not the database's fault: this record cannot be stored as read. Keeping it out would block
        # every dead letter behind it in the queue, so it is kept as it came, with the reason.
        logger.exception("dead letter from %s could not be archived as read; archiving it raw", letter.queue)
        with connection.begin_nested():
            raw = unreadable_record(letter.flow, letter.queue, safe_headers, letter.body, error)
            return archive(connection, raw), False


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
            letters: list[DeadLetter] = []
            last_tag = None
            while len(letters) < BATCH:
                method, properties, body = channel.basic_get(queue)
                if method is None:
                    break
                letters.append(DeadLetter(flow, queue, properties.headers, body))
                last_tag = method.delivery_tag
            if last_tag is None:
                return count
            try:
                store_all(self.engine, letters, delivery_limits=self.delivery_limits)
            except Exception:
                # The database is unavailable (or, after the raw fallback, refused even that): wait and retry.
                logger.warning("archive unavailable; %d dead letter(s) left in %s", len(letters), queue, exc_info=True)
                channel.basic_nack(last_tag, multiple=True, requeue=True)
                self._stopping.wait(DB_RETRY_SECONDS)
                return count
            channel.basic_ack(last_tag, multiple=True)  # every earlier tag on this channel is in `letters`
            count += len(letters)
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
            batch = pending[:BATCH]
            store_all(engine, [DeadLetter(flow, queue, headers, body) for body, headers in batch])
            del pending[: len(batch)]
            count += len(batch)
    return count
