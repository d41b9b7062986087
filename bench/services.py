"""The bench's own RabbitMQ vhost and PostgreSQL databases, and plain-pika publishing of wire-format envelopes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pika
import psycopg

from contracts.publishing import encode, new_envelope

RABBIT_HOST = os.environ.get("FLOWFLEET_BENCH_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("FLOWFLEET_BENCH_RABBIT_PORT", "5672"))
PG_HOST = os.environ.get("FLOWFLEET_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FLOWFLEET_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("FLOWFLEET_BENCH_PG_USER", "postgres")
ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/test"

#: Every SKU the orders scenario orders, each with plenty of stock at one location.
SKUS = 1000


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class Vhost:
    """A RabbitMQ vhost that lives for one bench run; `delete()` removes it with everything in it."""

    def __init__(self) -> None:
        self.name = f"flowfleet-bench-{uuid.uuid4().hex[:10]}"
        rabbitmqctl("add_vhost", self.name)
        try:
            rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        except BaseException:
            self.delete()
            raise
        self.url = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{quote(self.name, safe='')}"

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)

    def connection(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url))

    def depth(self, queue: str) -> int:
        connection = self.connection()
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()

    def purge(self, queues: Iterable[str]) -> None:
        connection = self.connection()
        try:
            channel = connection.channel()
            for queue in queues:
                channel.queue_purge(queue)
        finally:
            connection.close()

    def wait_for_depth(self, queue: str, count: int, timeout: float = 30.0) -> int:
        """Wait until `queue` holds `count` ready messages; return how many it holds then."""
        deadline = time.monotonic() + timeout
        while (depth := self.depth(queue)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return depth


class Database:
    """A PostgreSQL database that lives for one bench run."""

    def __init__(self, label: str) -> None:
        self.name = f"ff_bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}"

    def execute(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def drop(self) -> None:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def prepare_schema(database: Database) -> None:
    """Migrate the flowfleet schema, add the bench's effect table and the orders scenario's stock."""
    from workers.store.db import make_engine, migrate

    engine = make_engine(database.url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    database.execute(
        "CREATE TABLE IF NOT EXISTS bench_effects (message_id text PRIMARY KEY, at timestamptz NOT NULL)",
    )
    reset_schema(database)


class Analyzer(threading.Thread):
    """ANALYZE the run's database every few seconds while it runs, as autovacuum's autoanalyze would.

    This machine's PostgreSQL runs with autovacuum off. Without fresh statistics a statement that psycopg
    prepared while a table was nearly empty keeps the plan made then (a sequential scan), and the run
    measures that instead of the flow: the catalog's 100,000 prices slowed to ~150 msg/s on the outbox's
    supersede UPDATE scanning every delivery. ANALYZE invalidates the cached plans, as in production."""

    EVERY_SECONDS = 5.0

    def __init__(self, database: Database) -> None:
        super().__init__(name="bench-analyze", daemon=True)
        self.database = database
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stopping.wait(self.EVERY_SECONDS):
            with contextlib.suppress(psycopg.Error):
                self.database.execute("ANALYZE")

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


def reset_schema(database: Database) -> None:
    """Empty every table a scenario writes, and give the stock back, so each run starts alike."""
    database.execute(
        "TRUNCATE processed_events, order_lines, orders, dead_letter_events, dead_letters, bench_effects, "
        "stock_levels, prices, deliveries CASCADE",
        "INSERT INTO stock_levels (sku, location, on_hand, reserved, quarantined) "
        f"SELECT 'SKU-' || n, 'BER-1', 1000000000, 0, 0 FROM generate_series(0, {SKUS - 1}) AS n",
        "VACUUM ANALYZE",
    )


def pg_backend_cpu_seconds(dbname: str) -> float | None:
    """CPU seconds (user + system) of every PostgreSQL backend connected to `dbname`, read from /proc."""
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            pids = [row[0] for row in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    except psycopg.Error:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# -- the wire format ------------------------------------------------------------------------------


def order_data(order_id: str, sku: str, *, quantity: int = 1, more_skus: tuple[str, ...] = ()) -> dict[str, Any]:
    """A valid `order.created` v2 payload with one line per SKU (README "Publishing events")."""
    skus = (sku, *more_skus)
    return {
        "order_id": order_id,
        "channel": "storefront",
        "customer": {"customer_id": f"C-{order_id[-4:]}", "email": "bench@example.com", "name": "Bench Customer"},
        "currency": "EUR",
        "lines": [
            {"line_id": str(n), "sku": line_sku, "quantity": quantity, "unit_price_minor": 1999, "title": "Mug"}
            for n, line_sku in enumerate(skus, start=1)
        ],
        "total_minor": 1999 * quantity * len(skus),
    }


def envelope(
    data: dict[str, Any], *, occurred_at: datetime | None = None, version: int = 2, contract: str = "order.created"
) -> bytes:
    """A plain JSON envelope as upstream teams publish it."""
    body = new_envelope(
        contract, data, version=version, occurred_at=occurred_at, age=timedelta(seconds=1), producer="bench"
    )
    return encode(body)


def price_bodies(count: int, _tag: str) -> Iterator[bytes]:
    """The nightly repricing: `count` `price.changed` v1 envelopes, one per SKU, none stale."""
    effective_at = datetime.now(UTC).isoformat()
    for n in range(count):
        data = {"sku": f"SKU-P{n}", "currency": "EUR", "amount_minor": 1000 + n % 5000, "effective_at": effective_at}
        yield envelope(data, version=1, contract="price.changed")


def valid_bodies(count: int, tag: str, lines: int = 1) -> Iterator[bytes]:
    """`count` valid envelopes, each with its own order id (so none is a duplicate) and `lines` distinct SKUs."""
    for n in range(count):
        skus = [f"SKU-{(n * lines + i) % SKUS}" for i in range(lines)]
        yield envelope(order_data(f"ORD-{tag}-{n}", skus[0], more_skus=tuple(skus[1:])))


def invalid_bodies(count: int, tag: str) -> Iterator[bytes]:
    """`count` envelopes whose data fails the contract (a negative quantity): stage `contract`."""
    for n in range(count):
        yield envelope(order_data(f"ORD-{tag}-{n}", f"SKU-{n % SKUS}", quantity=-3))


PROPERTIES = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")


def publish_confirmed(url: str, exchange: str, routing_key: str, bodies: Iterable[bytes]) -> int:
    """Publish bodies with pipelined confirms (workers.messaging.publisher); returns how many the broker took."""
    from workers.messaging.publisher import ConfirmedPublisher, Outgoing

    publisher = ConfirmedPublisher(pika.URLParameters(url), exchange, window=512)
    report = publisher.publish(Outgoing(routing_key, body) for body in bodies)
    if report.failed:
        raise RuntimeError(
            f"the broker did not take {len(report.failed)} messages: {next(iter(report.failed.values()))}"
        )
    return report.confirmed


def publish_unconfirmed(
    url: str, exchange: str, routing_key: str, bodies: Iterable[bytes], properties: Any = PROPERTIES
) -> int:
    """Publish bodies as fast as pika goes, without confirms; returns how many were sent."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    sent = 0
    try:
        channel = connection.channel()
        for body in bodies:
            channel.basic_publish(exchange, routing_key, body, properties)
            sent += 1
    finally:
        connection.close()
    return sent


def celery_messages(bodies: Iterable[bytes]) -> Iterator[tuple[Any, bytes]]:
    """Each envelope as a Celery task message (protocol 2) for the no-op task `bench.noop`."""
    for body in bodies:
        task_id = str(uuid.uuid4())
        headers = {
            "lang": "py",
            "task": "bench.noop",
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "(...)",
            "kwargsrepr": "{}",
            "origin": "bench",
            "ignore_result": True,
        }
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=task_id,
            priority=0,
            headers=headers,
        )
        payload = [[body.decode("utf-8")], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        yield properties, json.dumps(payload).encode("utf-8")


def publish_celery(url: str, queue: str, bodies: Iterable[bytes]) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    sent = 0
    try:
        channel = connection.channel()
        for properties, payload in celery_messages(bodies):
            channel.basic_publish("", queue, payload, properties)
            sent += 1
    finally:
        connection.close()
    return sent
