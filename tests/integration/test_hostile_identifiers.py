"""Hostile identifiers through the real worker and a real HTTP ERP: each one reaches exactly its own endpoint,
or is refused at the contract stage on its first attempt; none decides which endpoint the fleet calls."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from workers.demo.day import order_v2

pytestmark = pytest.mark.integration

#: Accepted by the contract (visible ASCII, 1 to 64 characters): each must stay one path segment.
APPLIED = {
    "path traversal": "ORD-1/../../admin/wipe",
    "query and fragment": "ORD-2?force=true#",
    "percent-encoded slash": "ORD-3%2F..%2Fadmin",
    "dots only": "..",
    "every other punctuation": "ORD-5;a=1&b=<>\"'`{}|\\^[]@!$*+,:",
    "the longest allowed": "ORD-" + "9" * 60,
}
#: Refused by the contract, before any handler or downstream system sees them.
REFUSED = {
    "non-ASCII with a space": "ORD-6 Ä€",
    "CR/LF header injection": "ORD-7\r\nX-Admin: yes",
    "non-ASCII": "ORD-8Ä",
    "one too long": "ORD-" + "9" * 61,
    "blank": "   ",
}


def segment(value: str) -> str:
    """How the id must appear in the path: percent-encoded as one segment, dots included when it is only dots."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded.strip(".") == "" else encoded


def test_a_hostile_but_allowed_order_id_reaches_exactly_its_own_erp_endpoints(
    worker: Any, apply_event: Any, database: Any, fake_erp: Any
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 100)

    for order_id in APPLIED.values():
        placed = order_v2(order_id, [("TEE-RED-M", 1)])
        placed["customer"] = {"customer_id": "C-1", "email": "buyer@example.com"}
        apply_event("order.created", placed)
        apply_event("order.cancelled", {"order_id": order_id, "reason": "customer_request"})

    for case, order_id in APPLIED.items():
        sent = [(r.path, r.idempotency_key, r.status) for r in fake_erp.requests_for(order_id)]
        assert sent == [
            ("/orders", f"order-export:{order_id}", 200),
            (f"/orders/{segment(order_id)}/cancellation", f"order-cancel:{order_id}", 200),
        ], case
        assert database.orders(order_id)[0]["status"] == "cancelled", case
    erp_paths = {r.path.split("/")[1] for r in fake_erp.requests if r.system == "erp"}
    assert erp_paths == {"orders"}, "no request left the /orders endpoints"
    assert {r.path.count("/") for r in fake_erp.requests if r.system == "erp"} == {1, 3}
    assert database.dead_letters() == []


def test_a_refused_order_id_is_dead_lettered_at_the_contract_stage_on_its_first_attempt(
    worker: Any, emit: Any, store: Any, database: Any, fake_erp: Any, wait_for: Any
) -> None:
    worker()

    sent = {
        case: emit("order.cancelled", {"order_id": order_id, "reason": "fraud"}) for case, order_id in REFUSED.items()
    }

    for case, envelope in sent.items():
        row = wait_for(lambda e=envelope: store.dead_letter(e["message_id"]), what=f"{case} in the archive")
        assert (row["stage"], row["attempts"]) == ("contract", 1), case
        assert row["field_paths"] == ["data.order_id"], case
        assert "data.order_id" in row["error_message"], case
        assert (row["producer"], row["contract"]) == ("storefront", "order.cancelled"), case
    assert fake_erp.requests == [], "no refused id reached the ERP"
    assert database.orders() == []
