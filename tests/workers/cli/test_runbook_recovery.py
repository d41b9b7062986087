"""The runbooks' "Recover, in order" commands recover their incident: each is seeded, then its commands run.

Four incidents: an ERP outage, an ERP refusal, a bad publisher release, and payments parked behind an
order the ERP refused in its handler. The commands are read from the runbook itself (its ```sh block
after "**Recover, in order**"), with the runbook's example fingerprint and id replaced by the seeded
incident's, and run through the real CLI against the in-memory fleet; the test then asserts the end
state the runbook promises.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun
from workers.cli.dlq import replay as dlq_replay
from workers.store.tables import parked_events, payments

RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"
EXAMPLE_FINGERPRINT, EXAMPLE_ID = "3f2a9c1e0b7d4a65", "42"


def recovery(runbook: str) -> list[list[str]]:
    """The `flowfleet` commands of the runbook's recovery block, in order, without the `flowfleet`."""
    text = (RUNBOOKS / runbook).read_text(encoding="utf-8")
    after = text[text.index("**Recover, in order") :]
    block = after[after.index("```sh\n") + len("```sh\n") :]
    block = block[: block.index("```")]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "flowfleet":
            commands.append(words[1:])
    return commands


def run_all(cli: Cli, commands: list[list[str]], **examples: str) -> list[str]:
    """Run each command with the examples replaced; every one must succeed. Returns their outputs."""
    outputs = []
    for argv in commands:
        real = [examples.get(word, word) for word in argv]
        ran = cli(*real)
        assert ran.code == 0, f"flowfleet {shlex.join(real)} exited {ran.code}: {ran.err}"
        outputs.append(ran.out)
    return outputs


@pytest.fixture
def into_the_fleet(fleet: FleetRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq replay|repair` publish into the in-memory fleet, each copy settled."""

    class IntoTheFleet:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)
            fleet.settle()

    monkeypatch.setattr(dlq_replay, "open_publisher", lambda _settings: (IntoTheFleet(), lambda: None))


def exports(fleet: FleetRun) -> Counter[str]:
    return Counter(key for _path, key, status in fleet.erp.requests if 200 <= status < 300)


def order(order_id: str, quantity: int = 1) -> bytes:
    data = order_v2(order_id, [("MUG-BLUE", 1)], unit_price_minor=5000)
    data["lines"][0]["quantity"] = quantity
    return envelope(data)


def open_records(fleet: FleetRun) -> list[dict[str, Any]]:
    return [r for r in fleet.dead_letters() if r["status"] == "open"]


def test_the_outage_runbook_recovers_an_erp_outage_with_no_dead_letters(fleet: FleetRun, cli: Cli) -> None:
    fleet.erp.responder = lambda *_: 503
    fleet.publish(order("ORD-1"))
    fleet.publish(order("ORD-2"))
    fleet.join()
    fleet.relay.drain(timeout=1, quiet=0.2)
    assert fleet.dead_letters() == [] and exports(fleet) == {}
    fleet.erp.responder = lambda *_: 200  # the ERP is back; the relay's breaker may be open: wait past its cool-down
    fleet.relay.drain(timeout=10, quiet=fleet.settings.breaker_cooldown_seconds + 0.5)

    run_all(cli, recovery("alerts/delivery-backlog-older-than-objective.md"))

    assert fleet.dead_letters() == [], "an outage makes no dead letters"
    assert exports(fleet) == {"order-export:ORD-1": 1, "order-export:ORD-2": 1}


def test_the_refusal_runbook_replays_the_refused_group_once_the_system_changed(
    fleet: FleetRun, cli: Cli, into_the_fleet: None
) -> None:
    fleet.erp.responder = lambda _path, payload, _key, _attempt: 400 if payload.get("order_id") == "ORD-2" else 200
    fleet.run(order("ORD-1"), order("ORD-2"))
    [refused] = open_records(fleet)
    assert refused["stage"] == "delivery"
    fleet.erp.responder = lambda *_: 200  # the ERP team fixed it

    outputs = run_all(
        cli, recovery("alerts/deliveries-unconfirmed.md"), **{EXAMPLE_FINGERPRINT: refused["fingerprint"]}
    )
    fleet.settle()

    assert "escalate" in outputs[0], "the group says: ask the ERP first"
    assert "refused for good by erp" in outputs[1]
    assert exports(fleet) == {"order-export:ORD-1": 1, "order-export:ORD-2": 1}
    assert open_records(fleet) == []


def test_the_bad_publisher_runbook_recovers_resent_and_repaired_orders_and_their_parked_payments(
    fleet: FleetRun, cli: Cli, into_the_fleet: None
) -> None:
    fleet.run(order("ORD-1", quantity=-1), order("ORD-2", quantity=-1))
    money = {"payment_id": "P-1", "order_id": "ORD-1", "currency": "EUR", "amount_minor": 5000}
    fleet.publish(envelope(money, contract="payment.authorized", version=1), routing_key="payment.authorized")
    fleet.settle()
    fleet.run(order("ORD-1"))  # the producer resent ORD-1 corrected; ORD-2 it cannot resend
    [left] = open_records(fleet)

    outputs = run_all(cli, recovery("alerts/dead-letter-inflow.md"), **{EXAMPLE_ID: str(left["id"])})
    fleet.settle()

    assert "decision: repair" in outputs[0]
    assert exports(fleet) == {"order-export:ORD-1": 1, "order-export:ORD-2": 1}
    assert open_records(fleet) == []
    with fleet.engine.connect() as connection:
        authorized = connection.execute(select(payments.c.authorized_minor)).scalars().all()
    assert authorized == [5000], "the parked authorization was released when its order was applied"


def test_the_payments_runbook_releases_the_parked_payments_by_replaying_their_order(
    fleet: FleetRun, cli: Cli, faults: PortFaults, into_the_fleet: None
) -> None:
    faults.responder = lambda *_: 400  # the ERP refuses the order inside its handler: not applied
    fleet.run(order("ORD-1"))
    money = {"payment_id": "P-1", "order_id": "ORD-1", "currency": "EUR"}
    for contract, data in (
        ("payment.authorized", {**money, "amount_minor": 5000}),
        ("payment.captured", {**money, "capture_id": "C-1", "amount_minor": 3000}),
        ("payment.captured", {**money, "capture_id": "C-2", "amount_minor": 2000}),
    ):
        fleet.publish(envelope(data, contract=contract, version=1), routing_key=contract)
        fleet.settle()
    [refused] = open_records(fleet)
    assert refused["contract"] == "order.created", "the payments are parked, not dead-lettered"
    faults.responder = None  # the ERP team fixed it

    outputs = run_all(cli, recovery("payments.md"), **{EXAMPLE_FINGERPRINT: refused["fingerprint"]})
    fleet.settle()

    assert outputs[0].startswith("3 event(s) parked") and outputs[0].count("payment.") == 3, outputs[0]
    assert outputs[4].startswith("0 event(s) parked"), "the order's replay released what waited on it"
    with fleet.engine.connect() as connection:
        booked = connection.execute(select(payments.c.authorized_minor, payments.c.captured_minor)).all()
        released = connection.execute(select(parked_events.c.status)).scalars().all()
    assert [tuple(row) for row in booked] == [(5000, 5000)], "authorization, then both captures, applied"
    assert released == ["released"] * 3
    assert open_records(fleet) == []
