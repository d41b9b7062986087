"""The fulfillment flow's contracts: a shipment left a warehouse (whole, partial or split), and arrived."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from contracts.base import UNIQUE_LINE_IDS, ContractModel, unique
from contracts.registry import Contract
from contracts.types import Id, Location, Quantity, Text, Timestamp

FLOW = "fulfillment"


class ShippedLine(ContractModel):
    line_id: Id
    quantity: Quantity


class ShipmentDispatchedV1(ContractModel):
    """A parcel left `location` with some quantity of some order lines.

    An order may ship in several parcels (partial shipment) and from several locations (split
    order); each line ships from the location it is reserved at, never more than was ordered.
    """

    shipment_id: Id
    order_id: Id
    location: Location
    carrier: Text
    tracking_number: Text | None = None
    lines: Annotated[list[ShippedLine], Field(min_length=1, max_length=500, description=UNIQUE_LINE_IDS)]

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> ShipmentDispatchedV1:
        unique([line.line_id for line in self.lines], "line_id")
        return self


class ShipmentDeliveredV1(ContractModel):
    """The carrier delivered a parcel."""

    shipment_id: Id
    order_id: Id
    delivered_at: Timestamp


def _shipment_keys(event: ShipmentDispatchedV1 | ShipmentDeliveredV1) -> dict[str, str]:
    return {"order_id": event.order_id, "shipment_id": event.shipment_id}


SHIPMENT_DISPATCHED = Contract(
    name="shipment.dispatched",
    depends_on={"order.created": "order_id"},
    flow=FLOW,
    versions={1: ShipmentDispatchedV1},
    upcasters={},
    dedup_key=lambda event: event.shipment_id,
    business_keys=_shipment_keys,
    summary="A parcel with some order lines left a warehouse. Dedup key: shipment_id.",
    examples={
        1: {
            "shipment_id": "SHP-1",
            "order_id": "ORD-1001",
            "location": "berlin",
            "carrier": "DHL",
            "tracking_number": "00340434161234567890",
            "lines": [{"line_id": "1", "quantity": 2}],
        }
    },
)

SHIPMENT_DELIVERED = Contract(
    name="shipment.delivered",
    depends_on={"order.created": "order_id", "shipment.dispatched": "shipment_id"},
    flow=FLOW,
    versions={1: ShipmentDeliveredV1},
    upcasters={},
    dedup_key=lambda event: event.shipment_id,
    business_keys=_shipment_keys,
    summary="A parcel was delivered. Dedup key: shipment_id.",
    examples={1: {"shipment_id": "SHP-1", "order_id": "ORD-1001", "delivered_at": "2026-11-24T14:03:00Z"}},
)

CONTRACTS = (SHIPMENT_DISPATCHED, SHIPMENT_DELIVERED)
