"""The SQL shipment book: each parcel, the lines it carried, and whether it was delivered."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from handlers.fulfillment import Shipment
from workers.store.tables import shipment_lines, shipments


class SqlShipmentBook:
    """Shipments on the message's transaction; `get` locks the shipment row."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, shipment_id: str) -> Shipment | None:
        query = select(shipments).where(shipments.c.shipment_id == shipment_id).with_for_update()
        row = self._connection.execute(query).mappings().first()
        if row is None:
            return None
        lines = select(shipment_lines).where(shipment_lines.c.shipment_id == shipment_id)
        return Shipment(
            shipment_id=row["shipment_id"],
            order_id=row["order_id"],
            location=row["location"],
            carrier=row["carrier"],
            tracking_number=row["tracking_number"],
            lines=[(line["line_id"], line["quantity"]) for line in self._connection.execute(lines).mappings()],
            status=row["status"],
            delivered_at=row["delivered_at"],
        )

    def add(self, shipment: Shipment) -> None:
        self._connection.execute(
            shipments.insert().values(
                shipment_id=shipment.shipment_id,
                order_id=shipment.order_id,
                location=shipment.location,
                carrier=shipment.carrier,
                tracking_number=shipment.tracking_number,
                status=shipment.status,
                dispatched_at=datetime.now(UTC),
            )
        )
        self._connection.execute(
            shipment_lines.insert(),
            [
                {"shipment_id": shipment.shipment_id, "line_id": line_id, "quantity": quantity}
                for line_id, quantity in shipment.lines
            ],
        )

    def save(self, shipment: Shipment) -> None:
        self._connection.execute(
            update(shipments)
            .where(shipments.c.shipment_id == shipment.shipment_id)
            .values(status=shipment.status, delivered_at=shipment.delivered_at)
        )
