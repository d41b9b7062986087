"""No sequence of valid events makes available stock negative or lets reservations drift from the order lines.

A hypothesis state machine runs orders, adjustments, counts (fresh and stale), cancels, dispatches,
deliveries, return requests and receipts through the real handlers on the in-memory fakes. Each
event is built from the current state so that it is valid; the one business rejection it may meet
(cancelling an order that has shipped) must leave every book exactly as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from contracts.inventory import InventoryAdjustedV1, InventoryCountedV1
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from contracts.returns import ReturnReceivedV1, ReturnRequestedV1
from handlers.errors import PermanentError
from handlers.inventory import StockChanged
from handlers.order_book import Line, Order
from handlers.outcomes import Stale
from tests.support.fakes import Shop

SKUS = ("MUG", "TEE")
LOCATIONS = ("berlin", "hamburg")
RMA_LOCATIONS = (*LOCATIONS, "returns-hub")

T = TypeVar("T")


class StockLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.shop = Shop()
        self.last_sequence: dict[tuple[str, str], int] = {}
        self.undelivered: list[str] = []
        self.numbers = iter(range(1, 1_000_000))

    # Helpers

    def unchanged_by(self, run: Callable[[], T]) -> T:
        before = self.shop.snapshot()
        outcome = run()
        assert self.shop.snapshot() == before, f"{outcome!r} changed the state"
        return outcome

    def orders(self) -> list[Order]:
        return list(self.shop.orders.orders.values())

    def lines_where(self, keep: Callable[[Line], bool]) -> list[tuple[Order, Line]]:
        return [(order, line) for order in self.orders() for line in order.lines if keep(line)]

    @staticmethod
    def dispatchable(line: Line) -> bool:
        return line.status == "reserved" and line.unshipped > 0

    @staticmethod
    def returnable(line: Line) -> bool:
        return line.delivered > line.return_requested

    def receivable(self) -> list[Any]:
        return [rma for rma in self.shop.returns.returns.values() if any(x.received < x.requested for x in rma.lines)]

    # Orders

    @rule(lines=st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 5)), min_size=1, max_size=3))
    def place_an_order(self, lines: list[tuple[str, int]]) -> None:
        order_id = f"ORD-{next(self.numbers)}"
        self.shop.place(
            OrderCreatedV2.model_validate(
                {
                    "order_id": order_id,
                    "channel": "storefront",
                    "customer": {"email": "ana@example.com"},
                    "currency": "EUR",
                    "lines": [
                        {"line_id": f"L{n}", "sku": sku, "quantity": quantity, "unit_price_minor": 700}
                        for n, (sku, quantity) in enumerate(lines, start=1)
                    ],
                    "total_minor": 700 * sum(quantity for _sku, quantity in lines),
                }
            )
        )

    @precondition(lambda self: self.shop.orders.orders)
    @rule(data=st.data())
    def cancel_an_order(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.orders()), label="order")
        event = OrderCancelledV1.model_validate({"order_id": order.order_id, "reason": "customer_request"})
        if any(line.shipped for line in order.lines) and order.status != "cancelled":
            try:
                self.unchanged_by(lambda: self.shop.cancel(event))
            except PermanentError:
                pass
            else:
                raise AssertionError(f"cancelling {order.order_id}, which has shipped, was accepted")
            assert self.shop.order(order.order_id) == order
        else:
            assert self.shop.cancel(event).status == "cancelled"

    # Inventory

    def next_sequence(self, data: st.DataObject, key: tuple[str, str]) -> tuple[int, bool]:
        """A fresh sequence above the last applied one, or now and then a stale one."""
        last = self.last_sequence.get(key)
        if last is not None and data.draw(st.integers(0, 5), label="stale?") == 0:
            return data.draw(st.integers(max(1, last - 3), last), label="stale sequence"), True
        sequence = (last or 0) + data.draw(st.integers(1, 3), label="gap")
        self.last_sequence[key] = sequence
        return sequence, False

    @rule(data=st.data(), sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS))
    def adjust_stock(self, data: st.DataObject, sku: str, location: str) -> None:
        on_hand = self.shop.level(sku, location).on_hand
        sequence, stale = self.next_sequence(data, (sku, location))
        delta = data.draw(st.integers(-on_hand, 8).filter(bool), label="delta")
        reasons = ["receipt"] if delta > 0 else ["sale", "damage"]
        reason = data.draw(st.sampled_from([*reasons, "cycle_count_correction"]), label="reason")
        event = InventoryAdjustedV1.model_validate(
            {"sku": sku, "location": location, "delta": delta, "reason": reason, "sequence": sequence}
        )
        if stale:
            assert isinstance(self.unchanged_by(lambda: self.shop.adjust(event)), Stale)
        else:
            outcome = self.shop.adjust(event)
            assert isinstance(outcome, StockChanged)
            assert outcome.on_hand == on_hand + delta

    @rule(data=st.data(), sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), on_hand=st.integers(0, 12))
    def count_stock(self, data: st.DataObject, sku: str, location: str, on_hand: int) -> None:
        sequence, stale = self.next_sequence(data, (sku, location))
        event = InventoryCountedV1.model_validate(
            {"sku": sku, "location": location, "on_hand": on_hand, "sequence": sequence}
        )
        if stale:
            assert isinstance(self.unchanged_by(lambda: self.shop.count(event)), Stale)
        else:
            outcome = self.shop.count(event)
            assert isinstance(outcome, StockChanged)
            assert outcome.on_hand == on_hand

    # Fulfillment

    @precondition(lambda self: self.lines_where(self.dispatchable))
    @rule(data=st.data())
    def dispatch_reserved_lines(self, data: st.DataObject) -> None:
        order, first = data.draw(st.sampled_from(self.lines_where(self.dispatchable)), label="line")
        location = first.location
        candidates = [line for line in order.lines if self.dispatchable(line) and line.location == location]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique_by=lambda x: x.line_id))
        shipment_id = f"SHP-{next(self.numbers)}"
        self.shop.dispatch(
            ShipmentDispatchedV1.model_validate(
                {
                    "shipment_id": shipment_id,
                    "order_id": order.order_id,
                    "location": location,
                    "carrier": "DHL",
                    "lines": [
                        {"line_id": line.line_id, "quantity": data.draw(st.integers(1, line.unshipped))}
                        for line in chosen
                    ],
                }
            )
        )
        self.undelivered.append(shipment_id)

    @precondition(lambda self: self.undelivered)
    @rule(data=st.data())
    def deliver_a_shipment(self, data: st.DataObject) -> None:
        shipment_id = data.draw(st.sampled_from(self.undelivered), label="shipment")
        self.undelivered.remove(shipment_id)
        shipment = self.shop.shipments.get(shipment_id)
        assert shipment is not None
        self.shop.deliver(
            ShipmentDeliveredV1.model_validate(
                {"shipment_id": shipment_id, "order_id": shipment.order_id, "delivered_at": "2026-11-24T14:03:00Z"}
            )
        )

    # Returns

    @precondition(lambda self: self.lines_where(self.returnable))
    @rule(data=st.data(), location=st.sampled_from(RMA_LOCATIONS))
    def request_a_return(self, data: st.DataObject, location: str) -> None:
        order, _line = data.draw(st.sampled_from(self.lines_where(self.returnable)), label="line")
        candidates = [line for line in order.lines if self.returnable(line)]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique_by=lambda x: x.line_id))
        lines = [
            {"line_id": line.line_id, "quantity": data.draw(st.integers(1, line.delivered - line.return_requested))}
            for line in chosen
        ]
        event = ReturnRequestedV1.model_validate(
            {"rma_id": f"RMA-{next(self.numbers)}", "order_id": order.order_id, "location": location, "lines": lines}
        )
        self.shop.request_return(event)

    @precondition(lambda self: self.receivable())
    @rule(data=st.data())
    def receive_a_return(self, data: st.DataObject) -> None:
        rma = data.draw(st.sampled_from(self.receivable()), label="rma")
        candidates = [line for line in rma.lines if line.received < line.requested]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique_by=lambda x: x.line_id))
        lines = [
            {
                "line_id": line.line_id,
                "quantity": data.draw(st.integers(1, line.requested - line.received)),
                "condition": data.draw(st.sampled_from(["sellable", "damaged"])),
            }
            for line in chosen
        ]
        gross = 700 * sum(line["quantity"] for line in lines)
        event = ReturnReceivedV1.model_validate(
            {
                "receipt_id": f"RCV-{next(self.numbers)}",
                "rma_id": rma.rma_id,
                "order_id": rma.order_id,
                "lines": lines,
                "adjustment_minor": data.draw(st.integers(0, gross), label="adjustment"),
            }
        )
        self.shop.receive_return(event)

    # What must hold after every step

    @invariant()
    def every_stock_level_keeps_its_invariants(self) -> None:
        for level in self.shop.stock.rows.values():
            assert level.available >= 0, level
            assert 0 <= level.quarantined <= level.on_hand, level
            assert 0 <= level.reserved <= level.on_hand - level.quarantined, level
            assert level.return_pending >= 0, level

    @invariant()
    def reserved_stock_is_exactly_the_unshipped_units_of_the_lines_reserved_there(self) -> None:
        promised: Counter[tuple[str, str]] = Counter()
        for _order, line in self.lines_where(lambda line: line.status == "reserved"):
            assert line.location is not None, line
            promised[(line.sku, line.location)] += line.unshipped
        for key, level in self.shop.stock.rows.items():
            assert level.reserved == promised[key], (key, level, promised[key])
        assert set(promised) <= set(self.shop.stock.rows)

    @invariant()
    def lines_never_ship_deliver_or_return_more_than_they_should(self) -> None:
        for order in self.orders():
            for line in order.lines:
                assert 0 <= line.return_requested <= line.delivered <= line.shipped <= line.quantity, line
                assert (line.location is None) == (line.status in ("backordered", "cancelled")), line

    @invariant()
    def return_pending_is_what_was_requested_and_not_yet_received(self) -> None:
        pending: Counter[tuple[str, str]] = Counter()
        for rma in self.shop.returns.returns.values():
            for line in rma.lines:
                assert 0 <= line.received <= line.requested
                assert line.received == line.sellable + line.damaged
                pending[(line.sku, rma.location)] += line.requested - line.received
        for key, level in self.shop.stock.rows.items():
            assert level.return_pending == pending[key], (key, level)


StockLifecycle.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_stock_stays_consistent_over_any_sequence_of_valid_events = StockLifecycle.TestCase
