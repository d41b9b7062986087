"""On SQLite, an order whose unlocked plan was overtaken is rolled back to its savepoint and placed again locked."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from sqlalchemy import Engine, func, select

from contracts.envelope import decode_envelope
from contracts.published import REGISTRY
from handlers.stock import StockLevel
from tests.support.envelopes import envelope, order_v2
from workers.flows.orders import FLOW
from workers.store.books.inventory import SqlStockBook
from workers.store.outbox.recorder import Cause, OutboxRecorder
from workers.store.tables import deliveries, order_lines, orders, stock_levels


def place(engine: Engine, order_id: str, quantity: int) -> None:
    parsed = REGISTRY.parse(decode_envelope(envelope(order_v2(order_id, [("TEE-RED-M", quantity)]))), flow=FLOW.name)
    cause = Cause(FLOW.name, parsed.contract.name, 2, parsed.envelope.message_id, parsed.dedup_key)
    with engine.begin() as connection:
        FLOW.apply(parsed, connection, {system: OutboxRecorder(connection, system, cause) for system in FLOW.systems})


def test_a_plan_from_a_stale_read_is_undone_and_the_order_placed_where_the_locked_stock_says(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_peek = SqlStockBook.peek
    peeks: list[list[str]] = []

    def stale_peek(self: SqlStockBook, skus: Iterable[str]) -> dict[str, list[StockLevel]]:
        # The first read is as if 25 units at BER-1 were still reserved by an order cancelled since.
        levels = real_peek(self, skus)
        for level in levels["TEE-RED-M"]:
            if level.location == "BER-1" and not peeks:
                level.reserved += 25
        peeks.append(sorted(levels))
        return levels

    monkeypatch.setattr(SqlStockBook, "peek", stale_peek)
    place(engine, "ORD-RACE", 30)

    with engine.connect() as connection:
        lines = connection.execute(select(order_lines.c.status, order_lines.c.location)).all()
        tee = stock_levels.c.sku == "TEE-RED-M"
        reserved = dict(connection.execute(select(stock_levels.c.location, stock_levels.c.reserved).where(tee)).all())
        exports = connection.execute(select(deliveries.c.body).where(deliveries.c.system == "erp")).scalars().all()
        placed = connection.execute(select(func.count()).select_from(orders)).scalar_one()
    assert lines == [("reserved", "BER-1")]
    assert reserved == {"BER-1": 30, "HAM-2": 0}
    assert placed == 1
    assert [body["lines"][0]["location"] for body in exports] == ["BER-1"]
    assert len(peeks) == 2, "the plan was made twice: unlocked, then under the lock"


def test_a_plan_that_still_holds_under_the_lock_is_kept(engine: Engine) -> None:
    place(engine, "ORD-CALM", 30)

    with engine.connect() as connection:
        lines = connection.execute(select(order_lines.c.status, order_lines.c.location)).all()
        reserved = connection.execute(
            select(stock_levels.c.reserved).where(stock_levels.c.sku == "TEE-RED-M", stock_levels.c.location == "BER-1")
        ).scalar_one()
    assert lines == [("reserved", "BER-1")]
    assert reserved == 30
