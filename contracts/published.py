"""Every contract the fleet accepts, in one registry: the single list publishers are checked against."""

from __future__ import annotations

from contracts import catalog, fulfillment, inventory, orders, payments, returns
from contracts.registry import ContractRegistry

REGISTRY = ContractRegistry(
    [
        *orders.CONTRACTS,
        *inventory.CONTRACTS,
        *payments.CONTRACTS,
        *fulfillment.CONTRACTS,
        *returns.CONTRACTS,
        *catalog.CONTRACTS,
    ]
)
