"""The returns flow's contracts: a return (RMA) requested against delivered lines, and its receipt."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from contracts.base import UNIQUE_LINE_IDS, ContractModel, unique
from contracts.registry import Contract
from contracts.types import Id, Location, MinorUnits, Quantity, Text

FLOW = "returns"


class ReturnedLine(ContractModel):
    line_id: Id
    quantity: Quantity
    reason: Text | None = None


class ReturnRequestedV1(ContractModel):
    """The customer asked to send back delivered lines to the returns centre `location`.

    The quantity of a line across all its RMAs never exceeds what was delivered; the units count
    as return-pending at `location` until they arrive.
    """

    rma_id: Id
    order_id: Id
    location: Location
    lines: Annotated[list[ReturnedLine], Field(min_length=1, max_length=500, description=UNIQUE_LINE_IDS)]

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> ReturnRequestedV1:
        unique([line.line_id for line in self.lines], "line_id")
        return self


class ReceivedLine(ContractModel):
    line_id: Id
    quantity: Quantity
    condition: Literal["sellable", "damaged"]


class ReturnReceivedV1(ContractModel):
    """Returned units arrived and were inspected; their condition decides where they go.

    Sellable units go back to available stock, damaged ones to quarantine. The refund requested
    from the payments system is the lines' price less `adjustment_minor` (a restocking fee or a
    deduction for damage), never below zero.
    """

    receipt_id: Id
    rma_id: Id
    order_id: Id
    lines: Annotated[list[ReceivedLine], Field(min_length=1, max_length=500, description=UNIQUE_LINE_IDS)]
    adjustment_minor: MinorUnits = 0

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> ReturnReceivedV1:
        unique([line.line_id for line in self.lines], "line_id")
        return self


RETURN_REQUESTED = Contract(
    name="return.requested",
    flow=FLOW,
    versions={1: ReturnRequestedV1},
    upcasters={},
    dedup_key=lambda event: event.rma_id,
    business_keys=lambda event: {"rma_id": event.rma_id, "order_id": event.order_id},
    summary="A customer asked to return delivered lines (an RMA). Dedup key: rma_id.",
    examples={
        1: {
            "rma_id": "RMA-1",
            "order_id": "ORD-1001",
            "location": "returns-hub",
            "lines": [{"line_id": "1", "quantity": 1, "reason": "zu klein"}],
        }
    },
)

RETURN_RECEIVED = Contract(
    name="return.received",
    flow=FLOW,
    versions={1: ReturnReceivedV1},
    upcasters={},
    dedup_key=lambda event: event.receipt_id,
    business_keys=lambda event: {"rma_id": event.rma_id, "order_id": event.order_id},
    summary="Returned units arrived and were inspected. Dedup key: receipt_id.",
    examples={
        1: {
            "receipt_id": "RCV-1",
            "rma_id": "RMA-1",
            "order_id": "ORD-1001",
            "lines": [{"line_id": "1", "quantity": 1, "condition": "sellable"}],
            "adjustment_minor": 0,
        }
    },
)

CONTRACTS = (RETURN_REQUESTED, RETURN_RECEIVED)
