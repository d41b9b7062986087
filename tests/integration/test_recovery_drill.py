"""The recovery drill: an ERP outage with some refusals and a bad storefront release, recovered with documented
commands only, on real RabbitMQ and PostgreSQL (own vhost, own database).

The incident of issue 16, scaled down to run in about a minute: a stream of orders and payments while the
ERP answers 503 (and 400 for a few orders, for good); a storefront release sends orders with a negative
quantity and their payments, then resends the orders corrected. On-call then runs only commands the
runbooks give (counted; the goal is at most five), and the end state is asserted.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

from tests.integration.conftest import Database, FakeErp, Reply, RunFlowfleet, StartWorker, WaitFor
from tests.support.envelopes import envelope, order_v2

pytestmark = pytest.mark.integration

GOOD = [f"ORD-D{n:03d}" for n in range(24)]
REFUSED = GOOD[:3]  # the ERP refuses their export for good (400): the real refusals
BAD = [f"ORD-B{n:03d}" for n in range(4)]  # the bad release: negative quantity, then resent corrected
PRICE = 1500

#: The commands the drill runs, as the runbooks give them (alerts/delivery-backlog-older-than-objective.md,
#: alerts/dead-letter-inflow.md, alerts/deliveries-unconfirmed.md).
RECOVERY = [
    "flowfleet downstream status",
    "flowfleet dlq groups",
    "flowfleet dlq list --parked",
]


def order(order_id: str, quantity: int = 1) -> bytes:
    data = order_v2(order_id, [("MUG-BLUE", 1)], unit_price_minor=PRICE)
    data["lines"][0]["quantity"] = quantity
    data["total_minor"] = PRICE * max(quantity, 1)
    return envelope(data)


def authorization(order_id: str) -> bytes:
    data = {"payment_id": f"P-{order_id}", "order_id": order_id, "amount_minor": PRICE, "currency": "EUR"}
    return envelope(data, contract="payment.authorized", version=1)


def capture(order_id: str) -> bytes:
    data = {
        "capture_id": f"C-{order_id}",
        "payment_id": f"P-{order_id}",
        "order_id": order_id,
        "amount_minor": PRICE,
        "currency": "EUR",
    }
    return envelope(data, contract="payment.captured", version=1)


def undelivered(database: Database) -> list[str]:
    """The ordering keys of pending deliveries: those held behind a refused request wait for its decision."""
    rows = database.rows("SELECT ordering_key FROM deliveries WHERE status = 'pending' ORDER BY id")
    return [str(row["ordering_key"]) for row in rows]


def applied_count(database: Database, contract: str) -> int:
    return int(database.scalar("SELECT count(*) FROM processed_events WHERE contract = %s", contract) or 0)


def test_the_incident_is_recovered_with_at_most_five_documented_commands(
    worker: StartWorker,
    publish: Any,
    database: Database,
    fake_erp: FakeErp,
    flowfleet: RunFlowfleet,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 1000)
    fake_erp.default = Reply(503)  # the outage starts
    for order_id in REFUSED:
        fake_erp.script(order_id, 400)

    for order_id in GOOD:
        publish(order(order_id))
    for order_id in BAD:
        publish(order(order_id, quantity=-1))
    wait_for(lambda: applied_count(database, "order.created") == len(GOOD), timeout=60, what="good orders applied")
    for order_id in GOOD + BAD:
        publish(authorization(order_id), "payment.authorized")
    wait_for(
        lambda: (
            applied_count(database, "payment.authorized") == len(GOOD)
            and int(database.scalar("SELECT count(*) FROM parked_events") or 0) == len(BAD)
        ),
        timeout=60,
        what="authorizations applied, or parked behind their bad order",
    )
    for order_id in GOOD:
        publish(capture(order_id), "payment.captured")
    for order_id in BAD:
        publish(order(order_id), "order.created")  # the storefront resends its orders corrected
    wait_for(
        lambda: (
            applied_count(database, "payment.captured") == len(GOOD)
            and applied_count(database, "payment.authorized") == len(GOOD) + len(BAD)
        ),
        timeout=60,
        what="captures applied and the parked authorizations released",
    )
    time.sleep(1)  # the outage goes on a little
    assert [r for r in database.dead_letters() if "503" in r["error_message"]] == [], "no dead letter from the outage"
    fake_erp.default = Reply(200)  # the ERP is back
    held = sorted(f"erp:order_id={o}" for o in REFUSED)  # their captures wait behind the refused export
    wait_for(lambda: sorted(undelivered(database)) == held, timeout=60, what="the delivery backlog drained")

    outputs = []
    for command in RECOVERY:
        ran = flowfleet(*shlex.split(command)[1:])
        assert ran.returncode == 0, f"{command}: {ran.stderr}"
        outputs.append(ran.stdout)
    print(f"\nrecovery drill: {len(RECOVERY)} command(s): " + "; ".join(RECOVERY))

    assert len(RECOVERY) <= 5
    assert "decision: escalate (erp refused these for good (400)" in outputs[1]
    exported = sorted(fake_erp.exports())
    expected_orders = sorted(f"order-export:{o}" for o in [*GOOD[len(REFUSED) :], *BAD])
    assert sorted(k for k in exported if k.startswith("order-export:")) == expected_orders, "each good order once"
    ok = [r.idempotency_key for r in fake_erp.requests if r.system == "erp" and r.status is not None and r.status < 300]
    assert len(ok) == len(set(ok)), "no request applied twice"
    for order_id in [*GOOD, *BAD]:
        [row] = database.rows("SELECT * FROM payments WHERE payment_id = %s", f"P-{order_id}")
        assert row["authorized_minor"] == PRICE
        assert row["captured_minor"] == (PRICE if order_id in GOOD else 0), order_id
    reserved = database.stock("MUG-BLUE", "BER-1")["reserved"]
    assert reserved == len(GOOD) + len(BAD), "every good order reserved once"
    still_open = database.rows("SELECT * FROM dead_letters WHERE status = 'open' ORDER BY id")
    assert sorted((r["stage"], r["dedup_key"]) for r in still_open) == [("delivery", o) for o in REFUSED]
    closed = database.rows("SELECT * FROM dead_letters WHERE status <> 'open'")
    assert sorted(r["dedup_key"] for r in closed) == BAD, "the bad release's dead letters closed themselves"
    audited = database.rows(
        "SELECT d.dedup_key, e.actor FROM dead_letter_events e JOIN dead_letters d ON d.id = e.dead_letter_id "
        "WHERE e.action = 'superseded'"
    )
    assert sorted(r["dedup_key"] for r in audited) == BAD and {r["actor"] for r in audited} == {"flowfleet-worker"}
    assert int(database.scalar("SELECT count(*) FROM parked_events WHERE status = 'parked'") or 0) == 0
