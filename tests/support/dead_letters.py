"""Dead letters made the way production makes them: envelopes through the real (in-memory) fleet."""

from __future__ import annotations

from typing import Protocol

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun


class Refusing(Protocol):
    refused: set[str]


def refused_orders(fleet: FleetRun, erp: Refusing, *order_ids: str, email: str | None = None) -> list[int]:
    """Orders the ERP refused for good (a handler dead letter each); their record ids, in the order given."""
    erp.refused.update(order_ids)
    fleet.run(*(envelope(order_v2(o, [("MUG-BLUE", 1)], email=email)) for o in order_ids))
    erp.refused.difference_update(order_ids)
    ids = {r["dedup_key"]: r["id"] for r in fleet.dead_letters()}
    return [ids[o] for o in order_ids]


def negative_quantity(order_id: str, *, email: str | None = None) -> bytes:
    """An `order.created` the contract refuses (stage `contract`, field `data.lines.0.quantity`)."""
    data = order_v2(order_id, [("MUG-BLUE", 1)], email=email)
    data["lines"][0]["quantity"] = -3
    return envelope(data)
