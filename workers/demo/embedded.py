"""`flowfleet demo`: a realistic day across all six flows through the real pipeline, embedded, no services.

The in-memory broker, a SQLite file and in-process fakes of the ERP, channels, notify and
payments systems stand in for RabbitMQ, PostgreSQL and the real systems; the actors, failure
policy, dedup, dead-lettering and archive are the production ones. The day's events are in
workers.demo.day.
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dramatiq import Worker
from sqlalchemy import Connection, Engine, func, select

from workers.deadletters.drain import drain_memory
from workers.delivery.fake import FakeDownstream
from workers.demo.day import day, erp_answers
from workers.demo.stage import Stage
from workers.fleet import Fleet, middleware, register_actors, relay, topology
from workers.flows import FLOWS
from workers.messaging.memory_broker import MemoryBroker
from workers.observability.metrics import Outcomes
from workers.settings import DOWNSTREAM_SYSTEMS, Settings
from workers.store.archive.records import DeadLetterFilter, list_dead_letters
from workers.store.books.inventory import SqlStockBook
from workers.store.db import make_engine, migrate
from workers.store.tables import deliveries, orders, payments, prices, products, returns, shipments, stock_levels

SUMMARY_OUTCOMES = ("processed", "duplicate", "stale", "retried", "dead_lettered")


def demo_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        max_attempts=4,
        retry_min_backoff_ms=50,
        retry_max_backoff_ms=400,
        retry_window_seconds=60,
        # The relay's retries are quick too, and an ERP that stays down is given up on after 2 s.
        delivery_min_backoff_ms=50,
        delivery_max_backoff_ms=400,
        erp_delivery_budget_seconds=2,
        breaker_cooldown_seconds=0.3,
    )


def seed_stock(engine: Engine, stock: Mapping[tuple[str, str], int]) -> None:
    """Put stock on hand per (SKU, location) outside any event (tests start from it)."""
    with engine.begin() as connection:
        book = SqlStockBook(connection)
        for (sku, location), quantity in stock.items():
            book.receive(sku, location, quantity)


def run(print_line: Any = print, *, database: Path | None = None) -> dict[str, Any]:
    """Run the demo; return its summary (the tests read it), printing it as it goes.

    `database` keeps the day's archive in that SQLite file (`flowfleet console --demo` serves it).
    """
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    logging.getLogger("flowfleet").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="flowfleet-demo-") as workdir:
        settings = demo_settings(f"sqlite:///{database or Path(workdir) / 'demo.db'}")
        engine = make_engine(settings.database_url.get_secret_value())
        migrate(engine)
        outcomes = Outcomes()
        systems = {
            name: FakeDownstream(name, erp_answers) if name == "erp" else FakeDownstream(name)
            for name in DOWNSTREAM_SYSTEMS
        }
        plan = topology(settings)
        broker = MemoryBroker(routes=dict(plan.routes), middleware=middleware(settings, outcomes))
        fleet = Fleet(settings=settings, broker=broker, engine=engine, downstream=systems, outcomes=outcomes)
        register_actors(fleet)
        sender = relay(settings, engine, systems, fleet.wakeup)
        worker = Worker(broker, worker_threads=4, worker_timeout=50)
        worker.start()
        stage = Stage(engine, broker, tuple(plan.routes), settings.exchange, sender, print_line)
        try:
            for phase, steps in day():
                stage.run_phase(phase, steps)
            window = stage.maintenance_window(systems["erp"])
        finally:
            worker.stop()
        drain_memory(broker, engine, fleet.dead_letter_queues())
        summary = _summary(engine, outcomes, systems) | {"maintenance_window": window}
        engine.dispose()
    _print_summary(summary, print_line)
    return summary


def _summary(engine: Engine, outcomes: Outcomes, systems: Mapping[str, FakeDownstream]) -> dict[str, Any]:
    flows: dict[str, dict[str, int]] = {flow.name: dict.fromkeys(SUMMARY_OUTCOMES, 0) for flow in FLOWS}
    for (flow, outcome), count in outcomes.tally.items():
        flows.setdefault(flow, dict.fromkeys(SUMMARY_OUTCOMES, 0))[outcome] = count
    with engine.connect() as connection:
        dead, _total = list_dead_letters(connection, DeadLetterFilter(), limit=100)
        state = _state(connection)
        sent = connection.execute(
            select(deliveries.c.system, deliveries.c.status, func.count())
            .group_by(deliveries.c.system, deliveries.c.status)
            .order_by(deliveries.c.system, deliveries.c.status)
        ).all()
    by_system: dict[str, dict[str, int]] = defaultdict(dict)
    for system, status, n in sent:
        by_system[str(system)][str(status)] = int(n)
    return {
        "flows": flows,
        "outcomes": {outcome: sum(counts.get(outcome, 0) for counts in flows.values()) for outcome in SUMMARY_OUTCOMES},
        **state,
        "downstream": {
            name: {"effects": len(system.applied), "requests": len(system.requests)} for name, system in systems.items()
        },
        "deliveries": dict(by_system),
        "erp_order_exports": sum(1 for key in systems["erp"].applied if key.startswith("order-export:")),
        "dead_letters": [
            {
                "flow": d["flow"],
                "stage": d["stage"],
                "contract": d["contract"],
                "message_id": d["message_id"],
                "attempts": d["attempts"],
                "reason": d["error_message"],
            }
            for d in reversed(dead)
        ],
    }


def _state(connection: Connection) -> dict[str, Any]:
    """What the day left in the store, per flow."""

    def grouped(table: Any) -> dict[str, int]:
        query = select(table.c.status, func.count()).group_by(table.c.status).order_by(table.c.status)
        return {str(status): int(n) for status, n in connection.execute(query).all()}

    stock: dict[str, dict[str, int]] = defaultdict(dict)
    for row in connection.execute(
        select(stock_levels).order_by(stock_levels.c.sku, stock_levels.c.location)
    ).mappings():
        stock[f"{row['sku']}@{row['location']}"] = {
            "on_hand": row["on_hand"],
            "reserved": row["reserved"],
            "available": row["on_hand"] - row["reserved"] - row["quarantined"],
            "quarantined": row["quarantined"],
            "return_pending": row["return_pending"],
        }
    money = connection.execute(
        select(
            func.coalesce(func.sum(payments.c.captured_minor), 0), func.coalesce(func.sum(payments.c.refunded_minor), 0)
        )
    ).one()
    return {
        "orders_by_status": grouped(orders),
        "stock": dict(stock),
        "payments_by_status": grouped(payments),
        "captured_minor": int(money[0]),
        "refunded_minor": int(money[1]),
        "shipments_by_status": grouped(shipments),
        "returns_by_status": grouped(returns),
        "prices": int(connection.execute(select(func.count()).select_from(prices)).scalar_one()),
        "products": int(connection.execute(select(func.count()).select_from(products)).scalar_one()),
    }


def _print_summary(summary: dict[str, Any], print_line: Any) -> None:
    print_line("")
    print_line("Outcomes per flow:")
    print_line(f"  {'flow':<12} " + " ".join(f"{outcome:>13}" for outcome in SUMMARY_OUTCOMES))
    for flow, counts in summary["flows"].items():
        print_line(f"  {flow:<12} " + " ".join(f"{counts.get(outcome, 0):>13}" for outcome in SUMMARY_OUTCOMES))
    print_line("")
    print_line(f"orders:      {summary['orders_by_status']}")
    print_line(
        f"payments:    {summary['payments_by_status']}  captured {summary['captured_minor']}, "
        f"refunded {summary['refunded_minor']} (minor units, all currencies)"
    )
    print_line(f"fulfillment: {summary['shipments_by_status']}")
    print_line(f"returns:     {summary['returns_by_status']}")
    print_line(f"catalog:     {summary['prices']} prices, {summary['products']} products")
    print_line("inventory:")
    for key, level in summary["stock"].items():
        print_line(f"  {key:<18} " + ", ".join(f"{name} {value}" for name, value in level.items()))
    print_line("downstream (effects applied / requests sent):")
    for name, counts in summary["downstream"].items():
        print_line(f"  {name:<9} {counts['effects']} / {counts['requests']}")
    print_line("outbox (deliveries by status):")
    for name, counts in summary["deliveries"].items():
        print_line(f"  {name:<9} " + ", ".join(f"{status} {n}" for status, n in counts.items()))
    window = summary.get("maintenance_window")
    if window:
        print_line(
            f"maintenance window: {window['orders_reserved']} orders reserved while the ERP was paused, "
            f"{window['erp_requests_while_paused']} ERP requests meanwhile, {window['erp_backlog_at_resume']} "
            f"deliveries waiting at resume, {len(window['erp_exported_after_resume'])} orders exported after it, "
            f"{window['erp_backlog_after']} left"
        )
    print_line(f"Dead-letter archive ({len(summary['dead_letters'])} open):")
    for dead in summary["dead_letters"]:
        print_line(f"  [{dead['flow']}/{dead['stage']}] attempts={dead['attempts']} {dead['reason'][:140]}")
