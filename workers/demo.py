"""`flowfleet demo`: a realistic morning of orders through the real pipeline, embedded, no services.

The in-memory broker, a SQLite file and an in-process ERP stand in for RabbitMQ, PostgreSQL and
the real ERP; the actors, failure policy, dedup, dead-lettering and archive are the production ones.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dramatiq import Worker
from sqlalchemy import Engine, func, select

from workers.adapters.fake import FakeDownstream
from workers.drain import drain_memory
from workers.fleet import Fleet, middleware, register_actors, topology
from workers.memory_broker import MemoryBroker
from workers.metrics import Outcomes
from workers.settings import Settings
from workers.store.archive import DeadLetterFilter, list_dead_letters
from workers.store.db import make_engine, migrate
from workers.store.inventory import SqlStockBook
from workers.store.tables import orders

STOCK = {
    ("TEE-RED-M", "BER-1"): 40,
    ("TEE-RED-M", "HAM-2"): 10,
    ("MUG-BLUE", "BER-1"): 25,
    ("LAMP-ARC", "HAM-2"): 1,
}
#: The ERP's script: this order meets two 503s before it is accepted; this one is refused; this one never gets through.
FLAKY, REFUSED, DOWN = "ORD-2003", "ORD-2004", "ORD-2005"


def erp_answers(_path: str, payload: Mapping[str, Any], _key: str, attempt: int) -> int:
    order_id = payload.get("order_id")
    if order_id == FLAKY and attempt <= 2:
        return 503
    if order_id == REFUSED:
        return 400
    if order_id == DOWN:
        return 503
    return 200


def envelope(contract: str, version: int, data: dict[str, Any], *, age: timedelta = timedelta(minutes=3)) -> bytes:
    return json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "contract": contract,
            "version": version,
            "occurred_at": (datetime.now(UTC) - age).isoformat(),
            "producer": "storefront",
            "correlation_id": f"checkout-{uuid.uuid4().hex[:8]}",
            "data": data,
        },
        ensure_ascii=False,
    ).encode("utf-8")


def order_v2(order_id: str, lines: list[tuple[str, int]], *, channel: str = "storefront") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "channel": channel,
        "customer": {
            "customer_id": f"C-{order_id[-3:]}",
            "email": f"{order_id.lower()}@example.com",
            "name": "Zoë Ångström",
        },
        "currency": "EUR",
        "lines": [
            {"line_id": str(n), "sku": sku, "quantity": qty, "unit_price_minor": 1999, "title": "Café-Tasse"}
            for n, (sku, qty) in enumerate(lines, start=1)
        ],
        "total_minor": 1999 * sum(qty for _, qty in lines),
    }


def order_v1(order_id: str, sku: str, qty: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "email": "legacy@example.com",
        "currency": "GBP",
        "items": [{"sku": sku, "qty": qty, "unit_price_cents": 1250}],
        "total_cents": 1250 * qty,
    }


def morning() -> list[tuple[str, bytes, str]]:
    """(routing key, body, what it shows) for a realistic stream of storefront and marketplace orders."""
    duplicate = order_v2("ORD-2001", [("TEE-RED-M", 2)])
    bad_quantity = order_v2("ORD-2010", [("MUG-BLUE", 1)])
    bad_quantity["lines"][0]["quantity"] = -3
    return [
        ("order.created", envelope("order.created", 2, duplicate), "v2 order"),
        ("order.created", envelope("order.created", 2, duplicate), "same order again (new message_id)"),
        (
            "order.created",
            envelope(
                "order.created",
                2,
                order_v2("ORD-2002", [("MUG-BLUE", 3), ("TEE-RED-M", 1)], channel="marketplace:amazon"),
            ),
            "marketplace order",
        ),
        (
            "order.created",
            envelope("order.created", 1, order_v1("ORD-1999", "MUG-BLUE", 2)),
            "legacy v1 order",
        ),
        ("order.created", envelope("order.created", 2, order_v2(FLAKY, [("TEE-RED-M", 1)])), "ERP 503 twice"),
        ("order.created", envelope("order.created", 2, order_v2(REFUSED, [("MUG-BLUE", 1)])), "ERP 400"),
        ("order.created", envelope("order.created", 2, order_v2(DOWN, [("MUG-BLUE", 1)])), "ERP down"),
        (
            "order.created",
            envelope("order.created", 2, order_v2("ORD-2006", [("LAMP-ARC", 3)])),
            "out of stock",
        ),
        (
            "order.created",
            envelope("order.created", 2, order_v2("ORD-2007", [("TEE-RED-M", 45), ("MUG-BLUE", 1)])),
            "45 shirts, more than any one warehouse holds",
        ),
        ("order.created", b'{"message_id": "m-broken", "contract": "order.created", "vers', "truncated JSON"),
        ("order.created", envelope("order.created", 2, bad_quantity), "negative quantity"),
        (
            "order.created",
            envelope("order.created", 7, order_v2("ORD-2011", [("MUG-BLUE", 1)])),
            "unknown version",
        ),
        (
            "order.created",
            envelope("order.created", 2, order_v2("ORD-2012", [("MUG-BLUE", 1)]), age=timedelta(days=9)),
            "too old",
        ),
        (
            "order.created",
            envelope("order.created", 2, order_v2("ORD-2001", [("TEE-RED-M", 2)])),
            "duplicate, later",
        ),
    ]


def demo_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        max_attempts=4,
        retry_min_backoff_ms=50,
        retry_max_backoff_ms=400,
        retry_window_seconds=60,
    )


def seed_stock(engine: Engine, stock: Mapping[tuple[str, str], int]) -> None:
    """Put stock on hand per (SKU, location), as a goods receipt would."""
    with engine.begin() as connection:
        ledger = SqlStockBook(connection)
        for (sku, location), quantity in stock.items():
            ledger.receive(sku, location, quantity)


def run(print_line: Any = print) -> dict[str, Any]:
    """Run the demo; return its summary (the tests read it), printing it as it goes."""
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    logging.getLogger("flowfleet").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="flowfleet-demo-") as workdir:
        settings = demo_settings(f"sqlite:///{Path(workdir) / 'demo.db'}")
        engine = make_engine(settings.database_url.get_secret_value())
        migrate(engine)
        seed_stock(engine, STOCK)
        outcomes = Outcomes()
        erp = FakeDownstream("erp", erp_answers)
        plan = topology(settings)
        broker = MemoryBroker(routes=dict(plan.routes), middleware=middleware(settings, outcomes))
        fleet = Fleet(
            settings=settings,
            broker=broker,
            engine=engine,
            downstream={"erp": erp, **{s: FakeDownstream(s) for s in ("channels", "notify", "payments")}},
            outcomes=outcomes,
        )
        register_actors(fleet)
        worker = Worker(broker, worker_threads=4, worker_timeout=50)
        worker.start()
        try:
            stream = morning()
            print_line(f"Publishing {len(stream)} envelopes to {settings.exchange} ...")
            for routing_key, body, note in stream:
                broker.publish(settings.exchange, routing_key, body, {})
                print_line(f"  {routing_key:<14} {note}")
            for queue in plan.routes:
                broker.join(queue, timeout=60_000, settle_ms=300)
        finally:
            worker.stop()
        drain_memory(broker, engine, fleet.dead_letter_queues())
        summary = _summary(engine, outcomes, erp)
        engine.dispose()
    _print_summary(summary, print_line)
    return summary


def _summary(engine: Any, outcomes: Outcomes, erp: FakeDownstream) -> dict[str, Any]:
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(orders.c.status, func.count()).group_by(orders.c.status)).all())
        dead, _total = list_dead_letters(connection, DeadLetterFilter(), limit=100)
    return {
        "outcomes": {outcome: count for (_flow, outcome), count in sorted(outcomes.tally.items())},
        "orders_by_status": statuses,
        "erp_exports": len(erp.applied),
        "erp_requests": len(erp.requests),
        "dead_letters": [
            {
                "stage": d["stage"],
                "contract": d["contract"],
                "message_id": d["message_id"],
                "attempts": d["attempts"],
                "reason": d["error_message"],
            }
            for d in reversed(dead)
        ],
    }


def _print_summary(summary: dict[str, Any], print_line: Any) -> None:
    print_line("")
    print_line("Outcomes (orders flow):")
    for outcome, count in summary["outcomes"].items():
        print_line(f"  {outcome:<14} {count}")
    print_line(f"Orders stored by status: {summary['orders_by_status']}")
    print_line(f"ERP: {summary['erp_exports']} orders exported in {summary['erp_requests']} requests")
    print_line(f"Dead-letter archive ({len(summary['dead_letters'])} open):")
    for dead in summary["dead_letters"]:
        print_line(f"  [{dead['stage']:<8}] attempts={dead['attempts']} {dead['reason'][:150]}")
