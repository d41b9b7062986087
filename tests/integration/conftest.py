"""Fixtures that run the real `flowfleet worker` against a fresh RabbitMQ vhost, PostgreSQL database and HTTP ERP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import psycopg
import pytest
from psycopg.rows import dict_row

from contracts.publishing import new_envelope
from tests.support.integration import Metrics, flowfleet_command, free_port, wait_until
from tests.support.vhosts import VhostAdmin
from workers.demo.day import order_v2

RABBIT_HOST = os.environ.get("FLOWFLEET_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("FLOWFLEET_TEST_RABBIT_PORT", "5672"))
POSTGRES_HOST = os.environ.get("FLOWFLEET_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("FLOWFLEET_TEST_PG_PORT", "5432"))
POSTGRES_USER = os.environ.get("FLOWFLEET_TEST_PG_USER", "postgres")
ADMIN_DSN = f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
EXCHANGE = "commerce.events"
ORDERS_QUEUE = "orders"

#: The worker's budgets in these tests: small, so retries and exhaustion take well under a second.
MAX_ATTEMPTS = 4
DELIVERY_LIMIT = 3
WORKER_ENV = {
    "FLOWFLEET_RETRY_MIN_BACKOFF_MS": "100",
    "FLOWFLEET_RETRY_MAX_BACKOFF_MS": "500",
    "FLOWFLEET_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "FLOWFLEET_DELIVERY_LIMIT": str(DELIVERY_LIMIT),
    "FLOWFLEET_WORKER_THREADS": "2",
    "FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS": "10",
    # The relay retries deliveries after 100-500 ms, and its breaker cools down in 2 s.
    "FLOWFLEET_DELIVERY_MIN_BACKOFF_MS": "100",
    "FLOWFLEET_DELIVERY_MAX_BACKOFF_MS": "500",
    "FLOWFLEET_BREAKER_COOLDOWN_SECONDS": "2",
}


# -- reporting -----------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keep each phase's report on the test item, so fixtures can print worker logs when a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call"))


# -- services ------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"integration services are required on CI (CI=true) but {reason}", pytrace=False)
    pytest.skip(f"integration services unavailable: {reason}")


@pytest.fixture(scope="session")
def services() -> None:
    """Skip (or, on CI, fail) when RabbitMQ, rabbitmqctl or PostgreSQL is not there."""
    for name, host, port in (("RabbitMQ", RABBIT_HOST, RABBIT_PORT), ("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as error:
            _unavailable(f"{name} is unreachable at {host}:{port} ({error})")
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl is not on PATH (needed to create a vhost per test)")
    try:
        psycopg.connect(ADMIN_DSN, connect_timeout=3).close()
    except psycopg.Error as error:
        _unavailable(f"PostgreSQL refused {ADMIN_DSN}: {error}")


# -- RabbitMQ ------------------------------------------------------------------------------------


MANAGEMENT_URL = os.environ.get("FLOWFLEET_TEST_MANAGEMENT_URL", f"http://guest:guest@{RABBIT_HOST}:15672")
#: Test vhosts come and go through the management API (rabbitmqctl when it does not answer).
VHOSTS = VhostAdmin(MANAGEMENT_URL)


@pytest.fixture
def vhost(services: None) -> Iterator[str]:
    """A fresh vhost for this test only; yields its AMQP URL."""
    name = f"flowfleet-it-{uuid.uuid4().hex[:10]}"
    VHOSTS.add(name)
    try:
        yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{quote(name, safe='')}"
    finally:
        VHOSTS.delete(name)


class Rabbit:
    """Reads and changes the test's vhost with plain pika, as an operator or upstream team would."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.contextmanager
    def channel(self) -> Iterator[Any]:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def queue_state(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of an existing queue."""
        with self.channel() as channel:
            ok = channel.queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count


@pytest.fixture
def management_url(services: None) -> str:
    """The RabbitMQ management API (the plugin .ci/run enables); skip, or fail on CI, without it."""
    try:
        with urllib.request.urlopen(f"http://{RABBIT_HOST}:15672/", timeout=5):
            pass
    except OSError as error:
        _unavailable(f"the RabbitMQ management API is not answering ({error})")
    return MANAGEMENT_URL


@pytest.fixture
def rabbit(vhost: str) -> Rabbit:
    return Rabbit(vhost)


@pytest.fixture
def publish(vhost: str) -> Callable[..., None]:
    """Publish like an upstream team: plain pika, persistent, JSON, confirmed and mandatory."""

    def send(body: bytes | dict[str, Any], routing_key: str = "order.created", *, exchange: str = EXCHANGE) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")
        connection = pika.BlockingConnection(pika.URLParameters(vhost))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(exchange, routing_key, raw, properties, mandatory=True)
        finally:
            if connection.is_open:
                connection.close()

    return send


def make_envelope(
    data: dict[str, Any],
    *,
    contract: str = "order.created",
    version: int = 2,
    message_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A plain envelope as DESIGN.md documents it."""
    return new_envelope(
        contract, data, version=version, message_id=message_id, occurred_at=occurred_at, age=timedelta(seconds=5)
    )


@pytest.fixture
def envelope() -> Callable[..., dict[str, Any]]:
    return make_envelope


# -- PostgreSQL ----------------------------------------------------------------------------------


class Database:
    """The test's own database: read rows, seed stock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: psycopg.Connection[dict[str, Any]] | None = None

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        return self._connection

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a query; an empty list while the worker has not created the schema yet."""
        try:
            with self._connect().cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.rows(sql, *params)
        return next(iter(rows[0].values())) if rows else None

    def execute(self, sql: str, *params: Any) -> None:
        with self._connect().cursor() as cursor:
            cursor.execute(sql, params)

    def seed_stock(self, sku: str, location: str, on_hand: int) -> None:
        self.execute(
            "INSERT INTO stock_levels (sku, location, on_hand, reserved, quarantined) VALUES (%s, %s, %s, 0, 0)",
            sku,
            location,
            on_hand,
        )

    def orders(self, order_id: str | None = None) -> list[dict[str, Any]]:
        if order_id is None:
            return self.rows("SELECT * FROM orders ORDER BY order_id")
        return self.rows("SELECT * FROM orders WHERE order_id = %s", order_id)

    def order_lines(self, order_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM order_lines WHERE order_id = %s ORDER BY line_id", order_id)

    def stock(self, sku: str, location: str) -> dict[str, Any]:
        rows = self.rows("SELECT * FROM stock_levels WHERE sku = %s AND location = %s", sku, location)
        assert rows, f"no stock row for {sku}@{location}"
        return rows[0]

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM dead_letters ORDER BY id")

    def processed_events(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM processed_events ORDER BY dedup_key")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


@pytest.fixture
def database(services: None) -> Iterator[Database]:
    """A fresh, empty PostgreSQL database for this test only (the worker migrates it)."""
    name = f"ff_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database = Database(f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}")
    try:
        yield database
    finally:
        database.close()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the ERP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, an optional Retry-After, and how long to hold the request first."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class ErpRequest:
    path: str
    idempotency_key: str | None
    body: Any
    at: float  # time.monotonic() when the request arrived
    status: int | None = None

    @property
    def order_id(self) -> str | None:
        return self.body.get("order_id") if isinstance(self.body, dict) else None

    @property
    def system(self) -> str:
        """Which downstream system the request was for: the first path segment names all but the ERP."""
        first = self.path.strip("/").split("/", 1)[0]
        return next((name for name, mount in OTHER_SYSTEMS.items() if mount == first), "erp")


#: The ERP answers at the fake's root; the other systems under a mount of their own.
#: The payment gateway gets a mount of its own, so its paths never collide with the ERP's `/payments/...`.
OTHER_SYSTEMS = {"channels": "channels", "notify": "notify", "payments": "payment-gateway"}


@dataclass
class FakeErp:
    """A real HTTP ERP on 127.0.0.1: idempotent by key (a repeated key after a 2xx gets 409), scriptable.

    A 2xx answer is applied before any scripted delay, like a slow ERP whose answer may be lost.
    """

    url: str = ""
    requests: list[ErpRequest] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)
    default: Reply = field(default_factory=Reply)
    on_request: Callable[[ErpRequest], None] | None = None
    #: Per Idempotency-Key, the most requests the fake was serving at once (held ones included).
    most_in_flight: dict[str, int] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _scripts: dict[str, list[Reply]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def script(self, order_id: str, *replies: Reply | int) -> None:
        """Answer the next requests for `order_id` with these, in order; then the default."""
        with self._lock:
            self._scripts[order_id] = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    @staticmethod
    def reply(status: int = 200, *, retry_after: str | None = None, delay: float = 0.0) -> Reply:
        return Reply(status, retry_after, delay)

    def requests_for(self, order_id: str, system: str = "erp") -> list[ErpRequest]:
        with self._lock:
            return [r for r in self.requests if r.order_id == order_id and r.system == system]

    def exports(self, system: str = "erp") -> list[str]:
        """Idempotency keys `system` applied (answered 2xx for)."""
        with self._lock:
            systems = {r.idempotency_key: r.system for r in self.requests}
            return [key for key in self.applied if systems.get(key) == system]

    def release(self) -> None:
        """End every held request now (teardown)."""
        self._closing.set()

    def handle(self, path: str, key: str | None, body: Any) -> tuple[Reply, int]:
        request = ErpRequest(path=path, idempotency_key=key, body=body, at=time.monotonic())
        with self._lock:
            self.requests.append(request)
            self._in_flight[str(key)] = serving = self._in_flight.get(str(key), 0) + 1
            self.most_in_flight[str(key)] = max(serving, self.most_in_flight.get(str(key), 0))
        try:
            return self._answer(request)
        finally:
            with self._lock:
                self._in_flight[str(key)] -= 1

    def _answer(self, request: ErpRequest) -> tuple[Reply, int]:
        key = request.idempotency_key
        if self.on_request is not None:
            self.on_request(request)
        with self._lock:
            if key is not None and key in self.applied:
                reply, status = Reply(409), 409
            else:
                queue = self._scripts.get(request.order_id or "", [])
                reply = queue.pop(0) if queue else self.default
                status = reply.status
                if 200 <= status < 300 and key is not None:
                    self.applied[key] = request.body
            request.status = status
        if reply.delay:
            self._closing.wait(reply.delay)
        return reply, status


def _handler_for(erp: FakeErp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
            reply, status = erp.handle(self.path, self.headers.get("Idempotency-Key"), body)
            payload = json.dumps({"status": status}).encode()
            try:
                self.send_response(status)
                if reply.retry_after is not None and status == reply.status:
                    self.send_header("Retry-After", reply.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the worker died while we held its request: that is the point of some tests

        def log_message(self, format: str, *args: Any) -> None:  # the stdlib's name
            """Quiet: the fake's records are the log."""

    return Handler


@pytest.fixture
def fake_erp() -> Iterator[FakeErp]:
    erp = FakeErp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(erp))
    server.daemon_threads = True
    server.block_on_close = False
    erp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield erp
    finally:
        erp.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- waiting ---------------------------------------------------------------------------------------


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return wait_until


# -- the worker and the CLI ------------------------------------------------------------------------


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FLOWFLEET_") and k != "SENTRY_DSN"}


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """kill -9: no chance to finish, ack or close anything."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (finish in-flight messages), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()


@pytest.fixture
def service_env(vhost: str, database: Database, fake_erp: FakeErp) -> dict[str, str]:
    """The environment every flowfleet process in this test runs with."""
    return {
        **_clean_environment(),
        "FLOWFLEET_BROKER_URL": vhost,
        "FLOWFLEET_DATABASE_URL": database.url,
        "FLOWFLEET_ERP_URL": fake_erp.url,
        **{f"FLOWFLEET_{name.upper()}_URL": f"{fake_erp.url}/{mount}" for name, mount in OTHER_SYSTEMS.items()},
        "PYTHONUNBUFFERED": "1",
        **WORKER_ENV,
    }


@pytest.fixture
def worker(
    request: pytest.FixtureRequest, service_env: dict[str, str], rabbit: Rabbit, fake_erp: FakeErp, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `flowfleet worker` processes; each start returns once its orders consumer is attached."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*flowfleet_command(), "worker", *args],
                env={**service_env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        handle = WorkerProcess(process, log_path)
        started.append(handle)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode} at start:\n{handle.log()}")
            if "--relay-only" in args:
                return "delivery relay started" in handle.log()
            if "worker starting" not in handle.log():
                return False
            try:
                return rabbit.queue_state(ORDERS_QUEUE)[1] > 0
            except pika.exceptions.ChannelClosedByBroker:
                return False

        wait_until(ready, timeout=30, what=f"worker {process.pid} to consume {ORDERS_QUEUE} (or relay)")
        return handle

    yield start
    fake_erp.release()
    for handle in started:
        handle.stop(timeout=10)
    if _failed(request):
        for handle in started:
            print(f"\n----- {handle.log_path.name} (pid {handle.pid}, exit {handle.process.returncode}) -----")
            print(handle.log())


@pytest.fixture
def flowfleet(service_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run one `flowfleet` command with the test's services; returns the finished process."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*flowfleet_command(), *args],
            env={**service_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


# -- shared scenarios ------------------------------------------------------------------------------

#: An email that must never show up unmasked in CLI output.
CUSTOMER_EMAIL = "zoe.angstrom@example.com"


@dataclass(frozen=True)
class RejectedMessages:
    """Message ids and markers of the four bad messages `publish_rejects` sends."""

    unknown_version_id: str
    invalid_data_id: str
    invalid_order_id: str
    customer_email: str = CUSTOMER_EMAIL


@pytest.fixture
def publish_rejects(publish: Callable[..., None]) -> Callable[[], RejectedMessages]:
    """Publish one message per rejection kind: not JSON, not an envelope, unknown version, invalid data."""

    def send() -> RejectedMessages:
        unknown = make_envelope(order_v2("ORD-REJ-7", [("MUG-BLUE", 1)]), version=7)
        invalid_data = order_v2("ORD-REJ-Q", [("MUG-BLUE", 1)])
        invalid_data["customer"]["email"] = CUSTOMER_EMAIL
        invalid_data["lines"][0]["quantity"] = -3
        invalid = make_envelope(invalid_data)
        publish(f'{{"message_id": "m-broken", "from": "{CUSTOMER_EMAIL}", "vers'.encode())
        publish({"hello": "not an envelope"})
        publish(unknown)
        publish(invalid)
        return RejectedMessages(unknown["message_id"], invalid["message_id"], "ORD-REJ-Q")

    return send


# -- the six commerce flows ------------------------------------------------------------------------


def dedup_key_of(contract: str, data: dict[str, Any], version: int | None = None) -> str:
    """The dedup key the fleet derives from `data`, as its contract declares it."""
    from contracts.published import REGISTRY

    found = REGISTRY.get(contract)
    return found.dedup_key(found.parse(version or found.latest_version, data))


class Store:
    """Reads the commerce tables of the test's database (payments, shipments, returns, catalog)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def payment(self, payment_id: str) -> dict[str, Any]:
        row = self.payment_or_none(payment_id)
        assert row is not None, f"no row in payments for {(payment_id,)}"
        return row

    def payment_or_none(self, payment_id: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM payments WHERE payment_id = %s", payment_id)
        return rows[0] if rows else None

    def payment_operations(self, payment_id: str) -> list[tuple[str, str, int]]:
        rows = self.database.rows(
            "SELECT kind, operation_id, amount_minor FROM payment_operations WHERE payment_id = %s "
            "ORDER BY kind, operation_id",
            payment_id,
        )
        return [(row["kind"], row["operation_id"], row["amount_minor"]) for row in rows]

    def untried_deliveries(self, message_id: str) -> int:
        """Deliveries the event recorded that the relay has not tried yet."""
        rows = self.database.rows(
            "SELECT count(*) AS n FROM deliveries WHERE message_id = %s AND status = 'pending' AND attempts = 0 "
            "AND throttles = 0",
            message_id,
        )
        return int(rows[0]["n"])

    def shipments(self, order_id: str) -> list[dict[str, Any]]:
        return self.database.rows("SELECT * FROM shipments WHERE order_id = %s ORDER BY shipment_id", order_id)

    def shipment_lines(self, shipment_id: str) -> list[tuple[str, int]]:
        rows = self.database.rows(
            "SELECT line_id, quantity FROM shipment_lines WHERE shipment_id = %s ORDER BY line_id", shipment_id
        )
        return [(row["line_id"], row["quantity"]) for row in rows]

    def rma(self, rma_id: str) -> dict[str, Any]:
        row = self.rma_or_none(rma_id)
        assert row is not None, f"no row in returns for {(rma_id,)}"
        return row

    def rma_or_none(self, rma_id: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM returns WHERE rma_id = %s", rma_id)
        return rows[0] if rows else None

    def rma_lines(self, rma_id: str) -> list[dict[str, Any]]:
        return self.database.rows("SELECT * FROM return_lines WHERE rma_id = %s ORDER BY line_id", rma_id)

    def price(self, sku: str, currency: str) -> dict[str, Any]:
        row = self.price_or_none(sku, currency)
        assert row is not None, f"no row in prices for {(sku, currency)}"
        return row

    def price_or_none(self, sku: str, currency: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM prices WHERE sku = %s AND currency = %s", sku, currency)
        return rows[0] if rows else None

    def product(self, sku: str) -> dict[str, Any]:
        row = self.product_or_none(sku)
        assert row is not None, f"no row in products for {(sku,)}"
        return row

    def product_or_none(self, sku: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM products WHERE sku = %s", sku)
        return rows[0] if rows else None

    def stock_or_none(self, sku: str, location: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM stock_levels WHERE sku = %s AND location = %s", sku, location)
        return rows[0] if rows else None

    def applied(self, contract: str, dedup_key: str) -> dict[str, Any] | None:
        """The processed_events row of an event the fleet handled (applied, or counted as stale)."""
        rows = self.database.rows(
            "SELECT * FROM processed_events WHERE contract = %s AND dedup_key = %s", contract, dedup_key
        )
        return rows[0] if rows else None

    def dead_letter(self, message_id: str) -> dict[str, Any] | None:
        rows = self.database.rows("SELECT * FROM dead_letters WHERE message_id = %s", message_id)
        return rows[0] if rows else None

    def handled(self, contract: str, data: dict[str, Any], version: int | None = None) -> dict[str, Any] | None:
        """The processed_events row of the event with this payload, found by the dedup key its contract derives."""
        return self.applied(contract, dedup_key_of(contract, data, version))


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database)


@pytest.fixture
def emit(publish: Callable[..., None]) -> Callable[..., dict[str, Any]]:
    """Publish one event of any contract, routed by its name; returns the envelope sent."""
    from contracts.published import REGISTRY

    def send(
        contract: str, data: dict[str, Any], *, version: int | None = None, raw_utf8: bool = False
    ) -> dict[str, Any]:
        sent = make_envelope(data, contract=contract, version=version or REGISTRY.get(contract).latest_version)
        body: bytes | dict[str, Any] = json.dumps(sent, ensure_ascii=False).encode("utf-8") if raw_utf8 else sent
        publish(body, routing_key=contract)
        return sent

    return send


@pytest.fixture
def apply_event(emit: Callable[..., dict[str, Any]], store: Store) -> Callable[..., dict[str, Any]]:
    """Publish one event and wait until the fleet has handled it (its dedup key is in processed_events) and the
    relay has tried each delivery it recorded at least once (up to 10 s: a downstream that is down is no error;
    `deliveries=False` when the test holds them back on purpose)."""

    def send(
        contract: str, data: dict[str, Any], *, timeout: float = 20.0, deliveries: bool = True, **options: Any
    ) -> dict[str, Any]:
        sent = emit(contract, data, **options)
        key = dedup_key_of(contract, data, sent["version"])
        failed: list[dict[str, Any]] = []

        def handled() -> bool:
            if store.applied(contract, key):
                return True
            failed[:] = [row for row in [store.dead_letter(sent["message_id"])] if row]
            if failed:
                raise AssertionError(f"{contract} {key} was dead-lettered: {failed[0]['error_message']}")
            return False

        wait_until(handled, timeout=timeout, what=f"{contract} {key} to be applied")
        deadline = time.monotonic() + 10
        while deliveries and store.untried_deliveries(sent["message_id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return sent

    return send


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(free_port())


# -- the fixtures' types, for the tests' signatures ----------------------------------------------

StartWorker = Callable[..., WorkerProcess]
Publish = Callable[..., None]
MakeEnvelope = Callable[..., dict[str, Any]]
WaitFor = Callable[..., Any]
RunFlowfleet = Callable[..., subprocess.CompletedProcess[str]]
Emit = Callable[..., dict[str, Any]]
ApplyEvent = Callable[..., dict[str, Any]]
PublishRejects = Callable[[], RejectedMessages]
