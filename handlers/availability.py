"""Available-to-promise pushed to the channels system, so storefront and marketplaces never oversell."""

from __future__ import annotations

from collections.abc import Iterable

from handlers.downstream import Downstream
from handlers.stock import StockBook, available_to_promise


def announce_availability(channels: Downstream, stock: StockBook, skus: Iterable[str], *, cause: str) -> None:
    """Post each SKU's available-to-promise; `cause` (the event's contract and dedup key) keeps the key stable."""
    for sku in sorted(set(skus)):
        channels.post(
            "/availability",
            {"sku": sku, "available": available_to_promise(stock, sku)},
            idempotency_key=f"atp:{cause}:{sku}",
        )
