"""On SQLite, the orders flow reads, locks and writes the stock and the order lines in as many statements for
an order of three lines as for an order of one: per-line SQL would show here as more statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, select

from contracts.envelope import decode_envelope
from contracts.published import REGISTRY
from tests.support.envelopes import envelope, order_v2
from workers.flows.orders import FLOW
from workers.store.outbox.recorder import Cause, OutboxRecorder
from workers.store.tables import stock_levels

THREE_LINES = [("TEE-RED-M", 2), ("MUG-BLUE", 1), ("LAMP-ARC", 1)]


def apply(engine: Engine, data: dict[str, Any], *, contract: str = "order.created", version: int = 2) -> None:
    raw = decode_envelope(envelope(data, contract=contract, version=version))
    parsed = REGISTRY.parse(raw, flow=FLOW.name)
    cause = Cause(FLOW.name, parsed.contract.name, version, parsed.envelope.message_id, parsed.dedup_key)
    with engine.begin() as connection:
        FLOW.apply(parsed, connection, {system: OutboxRecorder(connection, system, cause) for system in FLOW.systems})


@contextmanager
def statements_on(engine: Engine, *tables: str) -> Iterator[list[str]]:
    """Every statement sent to the database while the block runs that names one of `tables` (executemany once)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if any(table in statement for table in tables):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_placing_three_lines_takes_as_many_stock_and_line_statements_as_placing_one(engine: Engine) -> None:
    with statements_on(engine, "stock_levels", "order_lines") as one:
        apply(engine, order_v2("ORD-ONE", [("TEE-RED-M", 1)]))
    with statements_on(engine, "stock_levels", "order_lines") as three:
        apply(engine, order_v2("ORD-THREE", THREE_LINES))

    assert len(three) == len(one) == 4, three  # peek, the lines' insert, lock, the levels' update
    with engine.connect() as connection:
        rows = connection.execute(select(stock_levels.c.sku, stock_levels.c.location, stock_levels.c.reserved))
        reserved = {(sku, location): quantity for sku, location, quantity in rows}
    assert reserved == {
        ("TEE-RED-M", "BER-1"): 3,
        ("TEE-RED-M", "HAM-2"): 0,
        ("MUG-BLUE", "BER-1"): 1,
        ("LAMP-ARC", "HAM-2"): 1,
    }


def test_cancelling_three_lines_locks_and_writes_the_stock_in_as_many_statements_as_cancelling_one(
    engine: Engine,
) -> None:
    apply(engine, order_v2("ORD-ONE", [("TEE-RED-M", 1)]))
    apply(engine, order_v2("ORD-THREE", THREE_LINES))

    cancel = {"reason": "customer_request"}
    with statements_on(engine, "stock_levels") as one:
        apply(engine, {"order_id": "ORD-ONE", **cancel}, contract="order.cancelled", version=1)
    with statements_on(engine, "stock_levels") as three:
        apply(engine, {"order_id": "ORD-THREE", **cancel}, contract="order.cancelled", version=1)

    assert len(three) == len(one) == 2, three  # one lock of every SKU, one update of every level
    assert "ORDER BY stock_levels.sku, stock_levels.location" in three[0], "locked in one fixed order"
    with engine.connect() as connection:
        reserved = connection.execute(select(stock_levels.c.reserved)).scalars().all()
    assert set(reserved) == {0}, "every reservation given back"
