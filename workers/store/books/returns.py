"""The SQL return book: RMAs, their lines, and what was received in which condition."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from handlers.returns import Return, ReturnLine
from workers.store.tables import return_lines, returns


class SqlReturnBook:
    """RMAs on the message's transaction; `get` locks the RMA row."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, rma_id: str) -> Return | None:
        row = (
            self._connection.execute(select(returns).where(returns.c.rma_id == rma_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            return None
        lines = select(return_lines).where(return_lines.c.rma_id == rma_id).order_by(return_lines.c.line_id)
        return Return(
            rma_id=row["rma_id"],
            order_id=row["order_id"],
            location=row["location"],
            lines=[
                ReturnLine(
                    line_id=line["line_id"],
                    sku=line["sku"],
                    requested=line["requested"],
                    received=line["received"],
                    sellable=line["sellable"],
                    damaged=line["damaged"],
                )
                for line in self._connection.execute(lines).mappings()
            ],
            status=row["status"],
            refunded_minor=row["refunded_minor"],
            receipts=list(row["receipts"]),
        )

    def add(self, rma: Return) -> None:
        self._connection.execute(
            returns.insert().values(
                rma_id=rma.rma_id,
                order_id=rma.order_id,
                location=rma.location,
                status=rma.status,
                refunded_minor=rma.refunded_minor,
                receipts=rma.receipts,
                requested_at=datetime.now(UTC),
            )
        )
        self._connection.execute(return_lines.insert(), [_line_row(rma.rma_id, line) for line in rma.lines])

    def save(self, rma: Return) -> None:
        self._connection.execute(
            update(returns)
            .where(returns.c.rma_id == rma.rma_id)
            .values(status=rma.status, refunded_minor=rma.refunded_minor, receipts=rma.receipts)
        )
        for line in rma.lines:
            self._connection.execute(
                update(return_lines)
                .where(return_lines.c.rma_id == rma.rma_id, return_lines.c.line_id == line.line_id)
                .values(received=line.received, sellable=line.sellable, damaged=line.damaged)
            )


def _line_row(rma_id: str, line: ReturnLine) -> dict[str, object]:
    return {
        "rma_id": rma_id,
        "line_id": line.line_id,
        "sku": line.sku,
        "requested": line.requested,
        "received": line.received,
        "sellable": line.sellable,
        "damaged": line.damaged,
    }
