"""Stock per SKU and location, and its arithmetic: the one place the stock invariants are kept.

Statuses: on hand (physically at the location, quarantined units included), reserved (promised
to order lines), quarantined (damaged, not for sale), return-pending (announced by an RMA, not
yet arrived) and available = on hand - reserved - quarantined. Every change keeps
0 <= quarantined <= on hand and 0 <= reserved <= on hand - quarantined, so available is never negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from handlers.errors import PermanentError, TransientError


@dataclass
class StockLevel:
    """One SKU at one location."""

    sku: str
    location: str
    on_hand: int = 0
    reserved: int = 0
    quarantined: int = 0
    return_pending: int = 0
    #: The highest source sequence applied to this (sku, location); None before the first.
    last_sequence: int | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.quarantined

    def is_stale(self, sequence: int) -> bool:
        return self.last_sequence is not None and sequence <= self.last_sequence

    def check(self) -> None:
        """Raise if a change broke an invariant: a bug, never a publisher's fault."""
        if not (0 <= self.quarantined <= self.on_hand and 0 <= self.reserved <= self.on_hand - self.quarantined):
            raise AssertionError(f"stock invariant broken for {self.sku}@{self.location}: {self}")
        if self.return_pending < 0:
            raise AssertionError(f"negative return-pending for {self.sku}@{self.location}: {self}")


class StockBook(Protocol):
    """Where stock levels are kept; reads other than `peek` lock the rows they return until the transaction ends."""

    def level(self, sku: str, location: str) -> StockLevel:
        """The level at one location (all zero if the SKU was never there)."""
        ...

    def levels(self, sku: str) -> list[StockLevel]:
        """The SKU's level at every location it is known at, in location order."""
        ...

    def peek(self, skus: Iterable[str]) -> dict[str, list[StockLevel]]:
        """Each SKU's levels as last committed, in location order, without locking: for a plan checked under the lock.

        One read for all of them; a SKU never stocked anywhere maps to an empty list.
        """
        ...

    def save(self, level: StockLevel) -> None: ...

    def save_all(self, levels: Iterable[StockLevel]) -> None:
        """Save these levels (of rows this transaction locked) in one write."""
        ...

    def lock(self, skus: Iterable[str]) -> None:
        """Lock every level of these SKUs at once, in one fixed order.

        A change that touches several SKUs calls this first, so two such changes never hold one
        SKU each while waiting for the other's.
        """
        ...


class AllocationChanged(TransientError):
    """Stock changed between the unlocked plan and the lock: the order must be placed again under the lock."""


def reserve_all(stock: StockBook, wanted: Sequence[tuple[str, int]]) -> list[str | None]:
    """Reserve each (sku, quantity) in turn at the first location (in location order) that has all of it
    available; return each one's location, None where none has. The SKUs must be locked (`StockBook.lock`):
    their levels are read from the lock, and every changed level is written in one `save_all`.
    """
    levels = {sku: stock.levels(sku) for sku in dict.fromkeys(sku for sku, _ in wanted)}
    chosen, changed = _allocate(levels, wanted)
    for level in changed:
        level.check()
    if changed:
        stock.save_all(changed)
    return chosen


def plan_reservations(stock: StockBook, wanted: Sequence[tuple[str, int]]) -> list[str | None]:
    """Where `reserve_all` would put each (sku, quantity), judged from one unlocked read; nothing is saved."""
    chosen, _changed = _allocate(stock.peek(sku for sku, _ in wanted), wanted)
    return chosen


def _allocate(
    levels: dict[str, list[StockLevel]], wanted: Sequence[tuple[str, int]]
) -> tuple[list[str | None], list[StockLevel]]:
    """Reserve in `levels` (changed in place) line by line; the location of each line and the levels changed."""
    chosen: list[str | None] = []
    changed: dict[tuple[str, str], StockLevel] = {}
    for sku, quantity in wanted:
        level = _first_covering(levels.get(sku, []), quantity)
        if level is not None:
            level.reserved += quantity
            changed[(level.sku, level.location)] = level
        chosen.append(None if level is None else level.location)
    return chosen, list(changed.values())


def _first_covering(levels: Iterable[StockLevel], quantity: int) -> StockLevel | None:
    return next((level for level in levels if level.available >= quantity), None)


def release_all(stock: StockBook, reservations: Iterable[tuple[str, str, int]]) -> None:
    """Give back each (sku, location, quantity) reservation (a cancelled order's lines), in one `save_all`.

    Lock the SKUs first (`StockBook.lock`), so the levels are read from the lock and in a fixed order.
    """
    levels: dict[tuple[str, str], StockLevel] = {}
    for sku, location, quantity in reservations:
        level = levels.get((sku, location)) or stock.level(sku, location)
        level.reserved -= min(quantity, level.reserved)
        levels[(sku, location)] = level
    if levels:
        stock.save_all(levels.values())


def set_on_hand(level: StockLevel, on_hand: int) -> int:
    """Change stock on hand; return how many reserved units no longer fit and must be taken back.

    Physical stock is the truth: when it shrinks below what is committed, quarantined units go
    first (damaged stock that is gone), then reservations must be undone by the caller.
    """
    if on_hand < 0:
        raise PermanentError(
            f"{level.sku}@{level.location}: on hand would become {on_hand}; "
            "the warehouse's figures disagree with the ledger: send an inventory.counted"
        )
    level.on_hand = on_hand
    shortfall = level.reserved + level.quarantined - on_hand
    if shortfall > 0:
        level.quarantined -= min(shortfall, level.quarantined)
    return max(0, level.reserved - (level.on_hand - level.quarantined))


def available_to_promise(stock: StockBook, sku: str) -> int:
    """What the channels may sell of a SKU: its available stock over every location."""
    return sum(level.available for level in stock.levels(sku))
