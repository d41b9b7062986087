"""A dead letter whose event was later applied under the same dedup key (a corrected resend) closes itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from contracts.published import REGISTRY
from tests.support.envelopes import envelope, message_id_of, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun
from workers.deadletters.preflight import ALREADY_APPLIED, STILL_FAILING, check
from workers.store.archive.audit import WORKER_ACTOR


def negative_quantity(order_id: str) -> bytes:
    data = order_v2(order_id, [("MUG-BLUE", 1)])
    data["lines"][0]["quantity"] = -3
    return envelope(data)


def only(records: list[dict[str, Any]], contract: str = "order.created") -> dict[str, Any]:
    [record] = [r for r in records if r["contract"] == contract]
    return record


def test_a_corrected_resend_resolves_the_contract_dead_letter_as_superseded_by_the_system(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-7"))
    broken = only(fleet.dead_letters())
    assert (broken["stage"], broken["status"], broken["dedup_key"]) == ("contract", "open", "ORD-7")

    fixed = envelope(order_v2("ORD-7", [("MUG-BLUE", 1)]))
    fleet.run(fixed)

    record = only(fleet.dead_letters())
    assert record["status"] == "resolved"
    [entry] = [e for e in record["history"] if e["action"] == "superseded"]
    assert entry["actor"] == WORKER_ACTOR
    assert entry["detail"]["outcome"] == "superseded"
    assert entry["detail"]["superseded_by"]["message_id"] == message_id_of(fixed)
    assert message_id_of(fixed) in entry["reason"]
    assert fleet.orders()["ORD-7"]["status"] != "", "the resend was applied"


def test_a_resend_after_a_handler_refusal_supersedes_that_dead_letter(fleet: FleetRun, faults: PortFaults) -> None:
    faults.responder = lambda *_: 400
    fleet.run(envelope(order_v2("ORD-8", [("MUG-BLUE", 1)])))
    faults.responder = None
    assert only(fleet.dead_letters())["status"] == "open"

    fleet.run(envelope(order_v2("ORD-8", [("MUG-BLUE", 1)])))

    assert only(fleet.dead_letters())["status"] == "resolved"


def test_an_event_of_another_contract_or_key_supersedes_nothing(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-9"))

    fleet.run(envelope(order_v2("ORD-10", [("MUG-BLUE", 1)])))
    fleet.run(envelope({"order_id": "ORD-9", "reason": "customer"}, contract="order.cancelled", version=1))

    assert only(fleet.dead_letters())["status"] == "open"


def test_a_duplicate_of_the_applied_event_supersedes_nothing_more(fleet: FleetRun) -> None:
    fleet.run(envelope(order_v2("ORD-11", [("MUG-BLUE", 1)])))
    fleet.run(negative_quantity("ORD-11"))  # arrives after the good one: a duplicate key, dead-lettered on contract

    assert only(fleet.dead_letters())["status"] == "open", "only an applied event supersedes"


def test_the_dry_run_of_a_superseded_body_says_already_applied_and_the_record_is_no_longer_open(
    fleet: FleetRun, cli: Cli
) -> None:
    broken = negative_quantity("ORD-12")
    fleet.run(broken)
    record_id = only(fleet.dead_letters())["id"]
    with fleet.engine.connect() as connection:
        before = check(connection, broken, flow="orders", registry=REGISTRY, max_event_age=timedelta(days=7))

    fleet.run(envelope(order_v2("ORD-12", [("MUG-BLUE", 1)])))

    with fleet.engine.connect() as connection:
        after = check(connection, broken, flow="orders", registry=REGISTRY, max_event_age=timedelta(days=7))
    assert (before.verdict, after.verdict) == (STILL_FAILING, ALREADY_APPLIED)
    ran = cli("dlq", "replay", str(record_id), "--dry-run", "--json")
    assert ran.code == 0, ran.err
    assert ran.json()["selected"] == 0, "it closed itself: nothing open is left to replay"
