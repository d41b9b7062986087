"""Every PostgreSQL connection of a running worker (and exporter) killed at once: the message whose transaction it
broke is retried, not dead-lettered, and the worker's pipeline, relay and drain and the exporter go on.

The engine does not ping a connection at checkout (one round trip per message saved): a connection the server
dropped is found out by the first statement sent on it, SQLAlchemy then invalidates the whole pool, and the
failure policy counts the disconnect as transient. This test is what allows the ping to be left out.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import Database, FakeErp, MakeEnvelope, Publish, StartWorker, WaitFor
from tests.support.integration import Metrics, flowfleet_command, free_port, wait_until
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter(service_env: dict[str, str], management_url: str, tmp_path: Path) -> Iterator[Callable[[], Metrics]]:
    """Start `flowfleet exporter` on a free port; returns its Metrics once it answers."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> Metrics:
        metrics = Metrics(free_port())
        env = {**service_env, "FLOWFLEET_MANAGEMENT_URL": management_url, "FLOWFLEET_METRICS_PORT": str(metrics.port)}
        with (tmp_path / "exporter.log").open("wb") as log:
            process = subprocess.Popen(
                [*flowfleet_command(), "exporter"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)

        def serving() -> bool:
            assert process.poll() is None, (tmp_path / "exporter.log").read_text()
            try:
                return metrics.value("flowfleet_exporter_up", source="archive") == 1
            except OSError:
                return False

        wait_until(serving, timeout=20, what="the exporter to read the archive")
        return metrics

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def _lock_waiters(database: Database) -> int:
    return int(
        database.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


def _archive_readable(exporter: Metrics) -> bool:
    """One scrape; true when it read the archive (a scrape may be the one that finds its connection dead)."""
    return exporter.value("flowfleet_exporter_up", source="archive") == 1


def test_killing_every_database_connection_retries_the_message_it_broke_and_loses_nothing(
    worker: StartWorker,
    exporter: Callable[[], Metrics],
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    metrics: Metrics,
    wait_for: WaitFor,
) -> None:
    worker(FLOWFLEET_METRICS_PORT=str(metrics.port))
    scrapes = exporter()
    database.seed_stock("MUG-BLUE", "BER-1", 1000)
    database.seed_stock("MUG-RED", "BER-1", 1000)
    first = [f"ORD-LOST-A{n}" for n in range(6)]
    for order_id in first:
        publish(envelope(order_v2(order_id, [("MUG-RED", 1)])))
    bad = [envelope({"order_id": "ORD-LOST-BAD-1"})]  # fails the contract: the drain archives it
    publish(bad[0])
    # Every part has used (and pooled) connections: the pipeline, the relay, the drain, the exporter.
    wait_for(lambda: len(fake_erp.exports()) == len(first), timeout=60, what="the first orders exported")
    wait_for(lambda: len(database.dead_letters()) == 1, timeout=30, what="the first bad body archived")

    helper_pid = database.scalar("SELECT pg_backend_pid()")
    with psycopg.connect(database.url) as holder:
        # One order's transaction waits for a stock row the test holds: it is in flight when its connection dies.
        holder.execute("SELECT 1 FROM stock_levels WHERE sku = 'MUG-BLUE' FOR UPDATE")
        publish(envelope(order_v2("ORD-LOST-INFLIGHT", [("MUG-BLUE", 1)])))
        wait_for(lambda: _lock_waiters(database) > 0, what="the in-flight order waiting for the stock row")
        killed = holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
            (helper_pid,),
        ).fetchall()
        holder.rollback()
    # The worker holds at least the waiting transaction's and one idle connection; the exporter one more.
    assert sum(1 for (gone,) in killed if gone) >= 3, f"only {killed} connections were there to kill"

    later = [f"ORD-LOST-B{n}" for n in range(12)]
    for order_id in later:
        publish(envelope(order_v2(order_id, [("MUG-RED", 1)])))
    bad.append(envelope({"order_id": "ORD-LOST-BAD-2"}))
    publish(bad[1])

    everything = sorted([*first, "ORD-LOST-INFLIGHT", *later])
    wait_for(lambda: len(database.orders()) == len(everything), timeout=60, what="every order applied")
    wait_for(lambda: len(database.dead_letters()) == 2, timeout=30, what="the second bad body archived")
    wait_for(lambda: len(fake_erp.exports()) == len(everything), timeout=60, what="every order exported")
    wait_for(lambda: _archive_readable(scrapes) or _archive_readable(scrapes), what="the exporter reading again")

    assert [order["order_id"] for order in database.orders()] == everything
    assert database.stock("MUG-RED", "BER-1")["reserved"] == len(first) + len(later), "each order reserved once"
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 1
    assert sorted(fake_erp.exports()) == [f"order-export:{order_id}" for order_id in everything]
    assert sorted(row["message_id"] for row in database.dead_letters()) == sorted(e["message_id"] for e in bad)
    assert metrics.value("flowfleet_messages_total", outcome="dead_lettered") == 2, "only the bad bodies"
    assert metrics.value("flowfleet_messages_total", outcome="retried") >= 1, "the broken transaction was retried"
    assert metrics.value("flowfleet_messages_total", outcome="processed") == len(everything)
