"""The SQL payment book: each payment's totals, and the captures and refunds they add up from."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from handlers.errors import TransientError
from handlers.payments import Payment
from workers.store.tables import payment_operations, payments
from workers.store.upsert import insert_ignoring_conflict


class SqlPaymentBook:
    """Payments on the message's transaction; `get` locks the payment row.

    A payment `get` did not find is created by an INSERT that refuses to overwrite: an authorization and
    a failure of one new payment may both find none, and the one that commits second must not write over
    the first. It is retried instead (TransientError), and then reads the payment the other one stored.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        #: The operations each payment had when read: `save` writes only the ones added since.
        self._stored: dict[str, set[tuple[str, str]]] = {}

    def get(self, payment_id: str) -> Payment | None:
        query = select(payments).where(payments.c.payment_id == payment_id).with_for_update()
        row = self._connection.execute(query).mappings().first()
        if row is None:
            return None
        query = select(payment_operations).where(payment_operations.c.payment_id == payment_id)
        operations = [
            (op["kind"], op["operation_id"], op["amount_minor"]) for op in self._connection.execute(query).mappings()
        ]
        self._stored[payment_id] = {(kind, operation_id) for kind, operation_id, _amount in operations}
        return Payment(
            payment_id=row["payment_id"],
            order_id=row["order_id"],
            currency=row["currency"],
            authorized_minor=row["authorized_minor"],
            captured_minor=row["captured_minor"],
            refunded_minor=row["refunded_minor"],
            status=row["status"],
            operations=operations,
        )

    def save(self, payment: Payment) -> None:
        now = datetime.now(UTC)
        values = {
            "order_id": payment.order_id,
            "currency": payment.currency,
            "authorized_minor": payment.authorized_minor,
            "captured_minor": payment.captured_minor,
            "refunded_minor": payment.refunded_minor,
            "status": payment.status,
            "updated_at": now,
        }
        if payment.payment_id in self._stored:
            self._connection.execute(update(payments).where(payments.c.payment_id == payment.payment_id).values(values))
        else:
            row = {"payment_id": payment.payment_id, **values}
            if insert_ignoring_conflict(self._connection, payments, row, payments.c.payment_id) is None:
                raise TransientError(
                    f"payment {payment.payment_id} was stored by a concurrent event after this one found none; "
                    "trying again with it"
                )
        stored = self._stored.setdefault(payment.payment_id, set())
        for kind, operation_id, amount in payment.operations:
            if (kind, operation_id) in stored:
                continue
            stored.add((kind, operation_id))
            row = {
                "kind": kind,
                "operation_id": operation_id,
                "payment_id": payment.payment_id,
                "amount_minor": amount,
                "applied_at": now,
            }
            insert_ignoring_conflict(self._connection, payment_operations, row, payment_operations.c.kind)
