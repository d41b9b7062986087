"""Fixtures that run the real fleet (actors, middleware, failure policy, dedup, archive) in memory."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.worker import has_results_middleware
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun, FleetRunner, Ran
from workers.cli.main import main
from workers.delivery.fake import FakeDownstream
from workers.demo.embedded import seed_stock
from workers.fleet import Fleet, middleware, register_actors, relay, topology
from workers.flows import FLOWS
from workers.messaging.memory_broker import MemoryBroker
from workers.observability.metrics import Outcomes
from workers.settings import Settings
from workers.store.db import make_engine, migrate

#: Stock on hand per (sku, location) in every test database.
STOCK = {
    ("TEE-RED-M", "BER-1"): 40,
    ("TEE-RED-M", "HAM-2"): 10,
    ("MUG-BLUE", "BER-1"): 25,
    ("LAMP-ARC", "HAM-2"): 1,
}
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
    """Small retry budget (3 attempts, 10-50 ms backoff), a one-hour event age limit, and a relay that
    retries deliveries after 10-50 ms (its breaker cools down in 1 s, longer than a settle waits)."""
    return Settings(
        database_url=SecretStr(database_url),
        max_attempts=3,
        retry_min_backoff_ms=10,
        retry_max_backoff_ms=50,
        retry_window_seconds=60,
        max_event_age_seconds=3600,
        delivery_min_backoff_ms=10,
        delivery_max_backoff_ms=50,
        breaker_cooldown_seconds=1.0,
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


@pytest.fixture
def faults() -> PortFaults:
    """Fails the flows' ERP port inside the handler's transaction once a test sets `faults.responder`."""
    return PortFaults("erp")


@pytest.fixture
def fleet_runner(
    settings: Settings,
    engine: Engine,
    erp: FakeDownstream,
    systems: dict[str, FakeDownstream],
    faults: PortFaults,
    request: pytest.FixtureRequest,
) -> FleetRunner:
    """Start a fleet: `fleet_runner(broker_class=MemoryBroker)`. Its worker is always stopped at teardown."""

    def start(broker_class: type[MemoryBroker] = MemoryBroker) -> FleetRun:
        outcomes = Outcomes()
        plan = topology(settings)
        broker = broker_class(routes=dict(plan.routes), middleware=middleware(settings, outcomes))
        flows = tuple(faults.wrap(flow) for flow in FLOWS)
        fleet = Fleet(
            settings=settings, broker=broker, engine=engine, downstream=systems, outcomes=outcomes, flows=flows
        )
        register_actors(fleet)
        worker = Worker(broker, worker_threads=2, worker_timeout=50)
        request.addfinalizer(worker.stop)
        worker.start()
        return FleetRun(
            settings,
            broker,
            fleet,
            worker,
            engine,
            erp,
            outcomes,
            systems,
            relay(settings, engine, systems, fleet.wakeup),
        )

    return start


@pytest.fixture
def fleet(fleet_runner: FleetRunner) -> FleetRun:
    """A started fleet on a plain MemoryBroker."""
    return fleet_runner()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str) -> Cli:
    """Run `flowfleet ARGS...` in-process against the test database; return exit code, stdout, stderr."""
    monkeypatch.setenv("FLOWFLEET_DATABASE_URL", database_url)

    def run(*argv: str) -> Ran:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run
