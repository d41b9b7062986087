"""Every contract the fleet accepts, in one registry: the single list publishers are checked against."""

from __future__ import annotations

from contracts import orders
from contracts.registry import ContractRegistry

REGISTRY = ContractRegistry([*orders.CONTRACTS])
