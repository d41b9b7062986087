"""Fixtures that run the real fleet (actors, middleware, failure policy, dedup, archive) in memory."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.worker import has_results_middleware
from pydantic import SecretStr
from sqlalchemy import Engine, select

from workers.adapters.fake import FakeDownstream
from workers.demo import seed_stock
from workers.drain import drain_memory
from workers.fleet import Fleet, middleware, register_actors, topology
from workers.memory_broker import MemoryBroker
from workers.metrics import Outcomes
from workers.settings import Settings
from workers.store.archive import DeadLetterFilter, get_dead_letter, list_dead_letters
from workers.store.db import make_engine, migrate
from workers.store.tables import order_lines, orders, stock_levels

#: Stock on hand per (sku, location) in every test database.
STOCK = {
    ("TEE-RED-M", "BER-1"): 40,
    ("TEE-RED-M", "HAM-2"): 10,
    ("MUG-BLUE", "BER-1"): 25,
    ("LAMP-ARC", "HAM-2"): 1,
}
#: The flow most worker tests drive.
FLOW = "orders"
#: Loggers the demo (and dramatiq) change process-wide.
_LOGGERS = ("dramatiq", "flowfleet")


@pytest.fixture(autouse=True)
def _isolated_process_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No FLOWFLEET_* from the developer's shell, files only under tmp_path, logging and caches restored,
    and no thread left behind."""
    for name in list(os.environ):
        if name.startswith("FLOWFLEET_") or name == "SENTRY_DSN":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    threads_before = set(threading.enumerate())
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    has_results_middleware.cache_clear()
    deadline = time.monotonic() + 2
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    while leftover and time.monotonic() < deadline:
        time.sleep(0.02)
        leftover = [t for t in leftover if t.is_alive()]
    assert not leftover, f"the test left threads running: {[t.name for t in leftover]}"


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'flowfleet.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Small retry budget (3 attempts, 10-50 ms backoff) and a one-hour event age limit."""
    return Settings(
        database_url=SecretStr(database_url),
        max_attempts=3,
        retry_min_backoff_ms=10,
        retry_max_backoff_ms=50,
        retry_window_seconds=60,
        max_event_age_seconds=3600,
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A migrated SQLite database in tmp_path with STOCK on hand."""
    engine = make_engine(settings.database_url.get_secret_value())
    migrate(engine)
    seed_stock(engine, STOCK)
    yield engine
    engine.dispose()


@pytest.fixture
def erp() -> FakeDownstream:
    """The ERP: accepts everything until a test sets `erp.responder(path, payload, key, attempt)`."""
    return FakeDownstream("erp")


@pytest.fixture
def systems(erp: FakeDownstream) -> dict[str, FakeDownstream]:
    """Every downstream system, each an in-process fake; the ERP is the `erp` fixture."""
    return {"erp": erp, **{name: FakeDownstream(name) for name in ("channels", "notify", "payments")}}


@dataclass
class FleetRun:
    """A started fleet on one in-memory broker, with what a test needs to drive and inspect it."""

    settings: Settings
    broker: MemoryBroker
    fleet: Fleet
    worker: Worker
    engine: Engine
    erp: FakeDownstream
    outcomes: Outcomes
    systems: dict[str, FakeDownstream]

    @property
    def queue(self) -> str:
        return self.settings.queue_name(FLOW)

    def publish(
        self, body: bytes, *, routing_key: str = "order.created", headers: dict[str, Any] | None = None
    ) -> None:
        """Publish to the topic exchange, as an upstream system does."""
        self.broker.publish(self.settings.exchange, routing_key, body, dict(headers or {}))

    def join(self, timeout_ms: int = 10_000) -> None:
        """Wait until every flow queue and its delay queue are empty and idle."""
        for flow in self.fleet.flows:
            self.broker.join(self.settings.queue_name(flow.name), timeout=timeout_ms)

    def settle(self, timeout_ms: int = 10_000) -> int:
        """Join the queue, then drain dead letters into the archive; return how many were archived."""
        self.join(timeout_ms)
        return drain_memory(self.broker, self.engine, self.fleet.dead_letter_queues())

    def run(self, *bodies: bytes, headers: dict[str, Any] | None = None) -> int:
        """Publish `bodies` in order and settle."""
        for body in bodies:
            self.publish(body, headers=headers)
        return self.settle()

    def tally(self, outcome: str, flow: str = FLOW) -> int:
        return self.outcomes.tally[(flow, outcome)]

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every archived dead letter, whole (body, headers, history), oldest first."""
        with self.engine.connect() as connection:
            rows, _total = list_dead_letters(connection, DeadLetterFilter(status=None), limit=1000)
            records = [get_dead_letter(connection, row["id"]) for row in reversed(rows)]
        return [record for record in records if record is not None]

    def orders(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            return {row["order_id"]: dict(row) for row in connection.execute(select(orders)).mappings()}

    def order_lines(self, order_id: str) -> list[dict[str, Any]]:
        query = select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def reserved(self, sku: str, location: str) -> int:
        query = select(stock_levels.c.reserved).where(stock_levels.c.sku == sku, stock_levels.c.location == location)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


FleetRunner = Callable[..., FleetRun]


@pytest.fixture
def fleet_runner(
    settings: Settings,
    engine: Engine,
    erp: FakeDownstream,
    systems: dict[str, FakeDownstream],
    request: pytest.FixtureRequest,
) -> FleetRunner:
    """Start a fleet: `fleet_runner(broker_class=MemoryBroker)`. Its worker is always stopped at teardown."""

    def start(broker_class: type[MemoryBroker] = MemoryBroker) -> FleetRun:
        outcomes = Outcomes()
        plan = topology(settings)
        broker = broker_class(routes=dict(plan.routes), middleware=middleware(settings, outcomes))
        fleet = Fleet(settings=settings, broker=broker, engine=engine, downstream=systems, outcomes=outcomes)
        register_actors(fleet)
        worker = Worker(broker, worker_threads=2, worker_timeout=50)
        request.addfinalizer(worker.stop)
        worker.start()
        return FleetRun(settings, broker, fleet, worker, engine, erp, outcomes, systems)

    return start


@pytest.fixture
def fleet(fleet_runner: FleetRunner) -> FleetRun:
    """A started fleet on a plain MemoryBroker."""
    return fleet_runner()
