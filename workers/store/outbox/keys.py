"""Which deliveries must keep their order, and which only carry the latest value: derived from the request.

Deliveries with the same ordering key go out in commit order. Same-key deliveries come from events about
the same entity, whose rows the effect's transaction locked or read committed, so a later one is also
inserted later: its id is higher, and the id order is the commit order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The entity a request is about, most specific first: an order's capture keeps its order's key.
ENTITY_FIELDS = ("order_id", "payment_id", "rma_id", "sku")
#: Requests that carry only the latest value of what they name: a newer one replaces an older unsent one.
LATEST_VALUE_PATHS: Mapping[str, tuple[str, ...]] = {
    "/availability": ("sku",),
    "/prices": ("sku", "currency"),
    "/products": ("sku",),
}
_MAX_KEY = 300


def ordering_key(system: str, path: str, payload: Mapping[str, Any]) -> str:
    """`erp:order_id=ORD-1`: the system and the entity the request is about (else the path itself)."""
    for name in ENTITY_FIELDS:
        value = payload.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return f"{system}:{name}={value}"[:_MAX_KEY]
    return f"{system}:{path}"[:_MAX_KEY]


def supersede_key(system: str, path: str, payload: Mapping[str, Any]) -> str | None:
    """`channels:/prices:SKU:EUR` for a latest-value request whose fields are all there; else None."""
    fields = LATEST_VALUE_PATHS.get(path)
    if fields is None:
        return None
    values = [payload.get(name) for name in fields]
    if any(not isinstance(value, str | int) or isinstance(value, bool) for value in values):
        return None
    return ":".join([system, path, *(str(value) for value in values)])[:_MAX_KEY]
