"""`flowfleet worker --processes 2`: two children consume, one metrics port reports both, a child killed is
started again, and SIGTERM drains both (an in-flight message finishes and is acked) before the parent exits 0."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import (
    ORDERS_QUEUE,
    Database,
    MakeEnvelope,
    Publish,
    Rabbit,
    StartWorker,
    WaitFor,
)
from tests.support.integration import Metrics
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return [int(child) for child in text.split()]


def _lock_waiters(database: Database) -> int:
    return int(
        database.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


def test_two_worker_processes_consume_report_their_sum_restart_a_dead_one_and_drain_on_sigterm(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    rabbit: Rabbit,
    metrics: Metrics,
    wait_for: WaitFor,
) -> None:
    running = worker("--processes", "2", FLOWFLEET_METRICS_PORT=str(metrics.port))
    wait_for(lambda: rabbit.queue_state(ORDERS_QUEUE)[1] == 2, timeout=60, what="both children consuming")
    wait_for(lambda: metrics.value("flowfleet_worker_processes") == 2, timeout=30, what="one scrape showing both")
    database.seed_stock("MUG-RED", "BER-1", 1000)
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    orders = [f"ORD-PROC-{n:02d}" for n in range(20)]
    for order_id in orders:
        publish(envelope(order_v2(order_id, [("MUG-RED", 1)])))
    wait_for(lambda: len(database.orders()) == len(orders), timeout=60, what="every order applied")
    wait_for(lambda: metrics.value("flowfleet_messages_total", outcome="processed") == len(orders), what="their sum")

    first, second = children_of(running.pid)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in children_of(running.pid) and len(children_of(running.pid)) == 2, what="a restart")
    wait_for(lambda: rabbit.queue_state(ORDERS_QUEUE)[1] == 2, timeout=60, what="the restarted child consuming")
    assert second in children_of(running.pid), "the other child ran on"

    with psycopg.connect(database.url) as holder:
        holder.execute("SELECT 1 FROM stock_levels WHERE sku = 'MUG-BLUE' FOR UPDATE")
        publish(envelope(order_v2("ORD-PROC-INFLIGHT", [("MUG-BLUE", 1)])))
        wait_for(lambda: _lock_waiters(database) > 0, what="an order in flight, waiting for the stock row")
        children = children_of(running.pid)
        running.process.send_signal(signal.SIGTERM)
        wait_for(lambda: running.log().count("finishing in-flight messages") >= 2, what="both children told to stop")
        holder.rollback()
    assert running.process.wait(timeout=30) == 0
    assert running.log().count("worker stopped") >= 2
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "every child has exited"
    assert database.orders("ORD-PROC-INFLIGHT"), "the in-flight order was finished"
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 1
    assert rabbit.queue_state(ORDERS_QUEUE) == (0, 0), "nothing left to redeliver, nobody consuming"


def test_the_children_drain_and_stop_when_their_parent_is_killed(
    worker: StartWorker, rabbit: Rabbit, wait_for: WaitFor
) -> None:
    running = worker("--processes", "2")
    wait_for(lambda: rabbit.queue_state(ORDERS_QUEUE)[1] == 2, timeout=60, what="both children consuming")
    children = children_of(running.pid)
    try:
        running.process.send_signal(signal.SIGKILL)  # nobody forwards a signal now: the children must notice
        running.process.wait(timeout=10)

        wait_for(
            lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists() and not _zombie(pid)],
            timeout=30,
            what="both children gone after their parent",
        )
        assert running.log().count("finishing in-flight messages") >= 2, "each drained as on SIGTERM"
        assert rabbit.queue_state(ORDERS_QUEUE)[1] == 0, "nobody left consuming"
    finally:  # no worker outlives the test, whatever failed
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False
