"""The inventory flow's contracts: stock adjusted by a delta, or counted to an absolute figure."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from contracts.base import ContractModel
from contracts.registry import Contract
from contracts.types import Location, SequenceNumber, Sku

FLOW = "inventory"

AdjustmentReason = Literal["receipt", "sale", "damage", "cycle_count_correction"]


class InventoryAdjustedV1(ContractModel):
    """The warehouse moved stock on hand by `delta` at one location, for a reason.

    `sequence` is the warehouse's own counter for this (sku, location): an event whose sequence is
    not above the last applied one is stale and changes nothing. A receipt adds stock, a sale or
    damage removes it, a cycle-count correction may do either.
    """

    # The rules below, in JSON Schema too: a publisher who validates against the schema is not refused.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"reason": {"const": "receipt"}}},
                    "then": {"properties": {"delta": {"minimum": 1}}},
                },
                {
                    "if": {"properties": {"reason": {"enum": ["sale", "damage"]}}},
                    "then": {"properties": {"delta": {"maximum": -1}}},
                },
            ]
        }
    )

    sku: Sku
    location: Location
    delta: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000, json_schema_extra={"not": {"const": 0}})]
    reason: AdjustmentReason
    sequence: SequenceNumber

    @model_validator(mode="after")
    def _delta_fits_reason(self) -> InventoryAdjustedV1:
        if self.delta == 0:
            raise ValueError("delta must not be zero")
        if self.reason == "receipt" and self.delta < 0:
            raise ValueError("a receipt adds stock: delta must be positive")
        if self.reason in ("sale", "damage") and self.delta > 0:
            raise ValueError(f"a {self.reason} removes stock: delta must be negative")
        return self


class InventoryCountedV1(ContractModel):
    """A physical count: stock on hand at one location is `on_hand`, whatever the ledger said."""

    sku: Sku
    location: Location
    on_hand: Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
    sequence: SequenceNumber


def _stock_key(event: InventoryAdjustedV1 | InventoryCountedV1) -> str:
    return f"{event.sku}@{event.location}#{event.sequence}"


def _sku(event: InventoryAdjustedV1 | InventoryCountedV1) -> dict[str, str]:
    return {"sku": event.sku, "location": event.location}


INVENTORY_ADJUSTED = Contract(
    name="inventory.adjusted",
    flow=FLOW,
    versions={1: InventoryAdjustedV1},
    upcasters={},
    dedup_key=_stock_key,
    business_keys=_sku,
    summary="Stock on hand changed by a delta. Dedup key: sku@location#sequence; older sequences are stale.",
    examples={1: {"sku": "TEE-RED-M", "location": "berlin", "delta": 24, "reason": "receipt", "sequence": 41}},
)

INVENTORY_COUNTED = Contract(
    name="inventory.counted",
    flow=FLOW,
    versions={1: InventoryCountedV1},
    upcasters={},
    dedup_key=_stock_key,
    business_keys=_sku,
    summary="Stock on hand was counted. Dedup key: sku@location#sequence; older sequences are stale.",
    examples={1: {"sku": "TEE-RED-M", "location": "berlin", "on_hand": 57, "sequence": 42}},
)

CONTRACTS = (INVENTORY_ADJUSTED, INVENTORY_COUNTED)
