"""Stock adjustments and counts: apply them in sequence, keep commitments honest, serve backorders.

Rules:
- Each (sku, location) carries the warehouse's sequence number. An event whose sequence is not
  above the last applied one is stale: it is counted and changes nothing, so a late or replayed
  event never overwrites newer state. (A stale delta is lost on purpose: the next count restores
  the truth.)
- `inventory.adjusted` moves on hand by a delta; `inventory.counted` sets it. On hand never goes
  below zero: a delta that would is a business rejection ("send a count").
- When on hand shrinks below what is committed, quarantined units go first, then the newest
  reservations at that location go back to backorder, whole lines at a time.
- When stock becomes available, backordered lines of the SKU are reserved there, oldest order
  first, each line whole (handlers.allocation).
- When available-to-promise changed, the channels system is told.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.inventory import InventoryAdjustedV1, InventoryCountedV1
from handlers.allocation import serve_backorders, take_back_reservations
from handlers.availability import announce_availability
from handlers.downstream import Downstream
from handlers.order_book import OrderBook
from handlers.outcomes import Stale
from handlers.stock import StockBook, StockLevel, available_to_promise, set_on_hand


@dataclass(frozen=True)
class StockChanged:
    """The outcome of an applied adjustment or count (past tense: it happened)."""

    sku: str
    location: str
    on_hand: int
    available: int
    allocated_lines: tuple[tuple[str, str], ...]
    unallocated_lines: tuple[tuple[str, str], ...]


def adjust_stock(
    event: InventoryAdjustedV1, *, stock: StockBook, orders: OrderBook, channels: Downstream
) -> StockChanged | Stale:
    """Move stock on hand by the event's delta."""
    level = stock.level(event.sku, event.location)
    return _apply(level, level.on_hand + event.delta, event, stock=stock, orders=orders, channels=channels)


def count_stock(
    event: InventoryCountedV1, *, stock: StockBook, orders: OrderBook, channels: Downstream
) -> StockChanged | Stale:
    """Set stock on hand to the counted figure."""
    level = stock.level(event.sku, event.location)
    return _apply(level, event.on_hand, event, stock=stock, orders=orders, channels=channels)


def _apply(
    level: StockLevel,
    on_hand: int,
    event: InventoryAdjustedV1 | InventoryCountedV1,
    *,
    stock: StockBook,
    orders: OrderBook,
    channels: Downstream,
) -> StockChanged | Stale:
    if level.is_stale(event.sequence):
        return Stale(f"{event.sku}@{event.location}: sequence {event.sequence} <= applied {level.last_sequence}")
    contract = "inventory.adjusted" if isinstance(event, InventoryAdjustedV1) else "inventory.counted"
    sequence = event.sequence
    promised_before = available_to_promise(stock, level.sku)
    excess = set_on_hand(level, on_hand)
    level.last_sequence = sequence
    unallocated = take_back_reservations(level, excess, orders) if excess else []
    allocated = serve_backorders(level, orders)
    level.check()
    stock.save(level)
    if available_to_promise(stock, level.sku) != promised_before:
        cause = f"{contract}:{level.sku}@{level.location}#{sequence}"
        announce_availability(channels, stock, [level.sku], cause=cause)
    return StockChanged(
        sku=level.sku,
        location=level.location,
        on_hand=level.on_hand,
        available=level.available,
        allocated_lines=tuple(allocated),
        unallocated_lines=tuple(unallocated),
    )
