"""The SQL order book: orders and their lines, read locked and written on the message's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from handlers.order_book import Line, Order
from workers.store.tables import order_lines, orders

#: Built once (bound parameters only). The lines' UPDATE runs as one executemany for all the order's lines,
#: which psycopg sends as one pipeline (one round trip).
_ADD_ORDER = orders.insert()
_ADD_LINES = order_lines.insert()
_SAVE_ORDER = update(orders).where(orders.c.order_id == bindparam("key_order_id"))
_SAVE_LINE = update(order_lines).where(
    order_lines.c.order_id == bindparam("key_order_id"), order_lines.c.line_id == bindparam("key_line_id")
)


class SqlOrderBook:
    """Orders and their lines; `get` locks the order row, so one order changes in one transaction at a time."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, order_id: str) -> Order | None:
        found = self._load(select(orders).where(orders.c.order_id == order_id).with_for_update())
        return found[0] if found else None

    def add(self, order: Order) -> None:
        row = {
            "order_id": order.order_id,
            "channel": order.channel,
            "customer_id": order.customer_id,
            "currency": order.currency,
            "total_minor": order.total_minor,
            "tax_exempt": int(order.tax_exempt),
            "status": order.status,
            "placed_at": datetime.now(UTC),
        }
        self._connection.execute(_ADD_ORDER, row)
        # One multi-row INSERT for every line (SQLAlchemy's insertmanyvalues on PostgreSQL).
        self._connection.execute(_ADD_LINES, [_line_row(order.order_id, line) for line in order.lines])

    def save(self, order: Order) -> None:
        self._connection.execute(_SAVE_ORDER, {"key_order_id": order.order_id, "status": order.status})
        if order.lines:
            self._connection.execute(_SAVE_LINE, [_line_update(order.order_id, line) for line in order.lines])

    def backordered(self, sku: str) -> list[Order]:
        return self._with_line(sku, (order_lines.c.status == "backordered",), newest_first=False)

    def reserved_at(self, sku: str, location: str) -> list[Order]:
        where = (order_lines.c.status == "reserved", order_lines.c.location == location)
        return self._with_line(sku, where, newest_first=True)

    def _with_line(self, sku: str, where: Iterable[Any], *, newest_first: bool) -> list[Order]:
        having_line = select(order_lines.c.order_id).where(order_lines.c.sku == sku, *where)
        placed = (
            (orders.c.placed_at.desc(), orders.c.order_id.desc())
            if newest_first
            else (
                orders.c.placed_at,
                orders.c.order_id,
            )
        )
        query = select(orders).where(orders.c.order_id.in_(having_line)).order_by(*placed).with_for_update()
        return self._load(query)

    def _load(self, query: Any) -> list[Order]:
        rows = list(self._connection.execute(query).mappings())
        if not rows:
            return []
        ids = [row["order_id"] for row in rows]
        lines: dict[str, list[Line]] = {order_id: [] for order_id in ids}
        line_query = (
            select(order_lines)
            .where(order_lines.c.order_id.in_(ids))
            .order_by(order_lines.c.order_id, order_lines.c.line_id)
        )
        for line in self._connection.execute(line_query).mappings():
            lines[line["order_id"]].append(
                Line(
                    line_id=line["line_id"],
                    sku=line["sku"],
                    quantity=line["quantity"],
                    unit_price_minor=line["unit_price_minor"],
                    status=line["status"],
                    location=line["location"],
                    shipped=line["shipped"],
                    delivered=line["delivered"],
                    return_requested=line["return_requested"],
                )
            )
        return [
            Order(
                order_id=row["order_id"],
                channel=row["channel"],
                customer_id=row["customer_id"],
                currency=row["currency"],
                total_minor=row["total_minor"],
                tax_exempt=bool(row["tax_exempt"]),
                lines=lines[row["order_id"]],
                status=row["status"],
            )
            for row in rows
        ]


def _line_row(order_id: str, line: Line) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line_id": line.line_id,
        "sku": line.sku,
        "quantity": line.quantity,
        "unit_price_minor": line.unit_price_minor,
        "status": line.status,
        "location": line.location,
        "shipped": line.shipped,
        "delivered": line.delivered,
        "return_requested": line.return_requested,
    }


def _line_update(order_id: str, line: Line) -> dict[str, Any]:
    """A line's changeable columns, and its key under names of their own (the WHERE's, not the SET's)."""
    row = _line_row(order_id, line)
    return {
        "key_order_id": row.pop("order_id"),
        "key_line_id": row.pop("line_id"),
        **row,
    }
