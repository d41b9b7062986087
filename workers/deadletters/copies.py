"""A replayed copy as it goes out: where it is routed, and which of the original's headers it keeps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.errors import RejectedMessage
from contracts.registry import ContractRegistry
from workers.messaging.replay_headers import ReplayMark
from workers.messaging.topology import DEAD_LETTER_SUFFIX

#: Headers the broker or flowfleet set on a delivery: a replayed copy starts without them.
_DELIVERY_HEADERS = ("x-death", "x-delivery-count")
_DELIVERY_PREFIXES = ("x-flowfleet-", "x-first-death-", "x-last-death-")


def route(record: Mapping[str, Any], registry: ContractRegistry, exchange: str) -> tuple[str, str]:
    """(exchange, routing key) for a record's copy: its contract through the exchange when the contract
    is known to its flow, else its flow's queue through the default exchange."""
    contract = record.get("contract")
    if contract:
        try:
            if registry.get(str(contract)).flow == record["flow"]:
                return exchange, str(contract)
        except RejectedMessage:
            pass
    return "", str(record["queue"]).removesuffix(DEAD_LETTER_SUFFIX)


def copy_headers(original: Mapping[str, Any], mark: ReplayMark) -> dict[str, Any]:
    """The original headers without the broker's and flowfleet's delivery bookkeeping, plus the replay mark."""
    kept = {
        key: value
        for key, value in original.items()
        if key not in _DELIVERY_HEADERS and not key.startswith(_DELIVERY_PREFIXES)
    }
    return kept | mark.headers()
