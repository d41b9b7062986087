"""Every first row is created once on PostgreSQL: two events that both find no row cannot both write one.

Payments are the one book two different events create (an authorization, or a failure that came
first); orders, shipments and RMAs are created only by the event whose dedup key is their id, so the
dedup claim already makes the second copy wait. Each test replays its race on two real connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, select

from contracts.payments import PaymentAuthorizedV1, PaymentFailedV1
from handlers.errors import PermanentError, TransientError
from handlers.order_book import Line, Order
from handlers.payments import Payment, authorize_payment, fail_payment
from tests.integration.conftest import Database
from tests.support.fakes import RecordingDownstream
from tests.support.interleaving import Rival
from workers.store.books.orders import SqlOrderBook
from workers.store.books.payments import SqlPaymentBook
from workers.store.db import make_engine, migrate
from workers.store.dedup import claim
from workers.store.tables import payments

pytestmark = pytest.mark.integration

PAYMENT = "PAY-000017"


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """The test's own PostgreSQL database, migrated, with two orders in EUR."""
    engine = make_engine(database.url)
    migrate(engine)
    with engine.begin() as connection:
        book = SqlOrderBook(connection)
        for order_id in ("ORD-A", "ORD-B"):
            line = Line(line_id="1", sku="TEE", quantity=1, unit_price_minor=1999, status="backordered")
            book.add(Order(order_id, "storefront", f"C-{order_id}", "EUR", 1999, False, [line], "backordered"))
    try:
        yield engine
    finally:
        engine.dispose()


def authorized(order_id: str = "ORD-A", amount: int = 1999) -> PaymentAuthorizedV1:
    data = {"payment_id": PAYMENT, "order_id": order_id, "amount_minor": amount, "currency": "EUR"}
    return PaymentAuthorizedV1.model_validate(data)


def failed(order_id: str = "ORD-B") -> PaymentFailedV1:
    data = {"payment_id": PAYMENT, "order_id": order_id, "operation": "authorization", "code": "card_declined"}
    return PaymentFailedV1.model_validate(data)


class PaymentsPausedBeforeSaving(SqlPaymentBook):
    """A payment book that runs the rival transaction after the handler's read, just before its write."""

    def __init__(self, connection: Connection, rival: Rival[object]) -> None:
        super().__init__(connection)
        self.rival = rival
        self.rival_committed_first: bool | None = None

    def save(self, payment: Payment) -> None:
        self.rival_committed_first = self.rival.run_until_committed_or_blocked()
        super().save(payment)


def authorize(connection: Connection, event: PaymentAuthorizedV1) -> object:
    return authorize_payment(event, payments=SqlPaymentBook(connection), orders=SqlOrderBook(connection))


def fail(connection: Connection, event: PaymentFailedV1) -> object:
    book, orders = SqlPaymentBook(connection), SqlOrderBook(connection)
    return fail_payment(event, payments=book, orders=orders, notify=RecordingDownstream())


def stored_payment(engine: Engine) -> tuple[str, str, int]:
    with engine.connect() as connection:
        row = connection.execute(select(payments.c.order_id, payments.c.status, payments.c.authorized_minor)).one()
    return row.order_id, row.status, row.authorized_minor


def test_a_failure_that_found_no_payment_does_not_write_over_an_authorization_committed_meanwhile(
    engine: Engine,
) -> None:
    rival: Rival[object] = Rival(engine, lambda connection: authorize(connection, authorized()))

    with pytest.raises(TransientError, match="stored by a concurrent event"), engine.begin() as connection:
        book = PaymentsPausedBeforeSaving(connection, rival)
        fail_payment(failed(), payments=book, orders=SqlOrderBook(connection), notify=RecordingDownstream())

    assert book.rival_committed_first, "the authorization committed between the failure's read and write"
    assert isinstance(rival.finish(), Payment)
    assert stored_payment(engine) == ("ORD-A", "authorized", 1999)
    with engine.begin() as connection:  # the retry reads the authorization and fails it, amount kept
        fail(connection, failed())
    assert stored_payment(engine) == ("ORD-A", "failed", 1999)


def test_an_authorization_that_found_no_payment_does_not_revive_a_failure_committed_meanwhile(engine: Engine) -> None:
    rival: Rival[object] = Rival(engine, lambda connection: fail(connection, failed()))

    with pytest.raises(TransientError, match="stored by a concurrent event"), engine.begin() as connection:
        book = PaymentsPausedBeforeSaving(connection, rival)
        authorize_payment(authorized(), payments=book, orders=SqlOrderBook(connection))

    assert book.rival_committed_first
    assert isinstance(rival.finish(), Payment)
    assert stored_payment(engine) == ("ORD-B", "failed", 0)
    with pytest.raises(PermanentError, match="already failed"), engine.begin() as connection:
        authorize(connection, authorized())
    assert stored_payment(engine) == ("ORD-B", "failed", 0)


def test_an_authorization_and_a_failure_of_the_same_order_wait_for_each_other_at_the_order(engine: Engine) -> None:
    rival: Rival[object] = Rival(engine, lambda connection: fail(connection, failed("ORD-A")))

    with engine.begin() as connection:
        book = PaymentsPausedBeforeSaving(connection, rival)
        authorize_payment(authorized(), payments=book, orders=SqlOrderBook(connection))

    assert book.rival_committed_first is False, "the failure waits on the order row the authorization locked"
    assert isinstance(rival.finish(), Payment)
    assert stored_payment(engine) == ("ORD-A", "failed", 1999)


@pytest.mark.parametrize(
    ("contract", "key"),
    [("order.created", "ORD-C"), ("shipment.dispatched", "SHP-1"), ("return.requested", "RMA-1")],
)
def test_the_second_copy_of_a_creating_event_waits_for_the_first_and_is_a_duplicate(
    engine: Engine, contract: str, key: str
) -> None:
    """Orders, shipments and RMAs are created only by events keyed by their id: the claim serialises them."""

    def second_copy(connection: Connection) -> bool:
        return claim(connection, flow="any", contract=contract, dedup_key=key, message_id="m-2", version=1)

    rival: Rival[bool] = Rival(engine, second_copy)
    with engine.begin() as connection:
        assert claim(connection, flow="any", contract=contract, dedup_key=key, message_id="m-1", version=1)
        assert rival.run_until_committed_or_blocked() is False, "the second claim waits for the first transaction"

    assert rival.finish() is False
