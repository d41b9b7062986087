"""Replaying dead letters through the real pipeline on the in-memory broker and SQLite: outcomes, stops, races."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS
from sqlalchemy import select

from contracts.published import REGISTRY
from tests.support.envelopes import envelope, message_id_of, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRun
from workers.deadletters.replay import MAX_REFUSED_IN_A_ROW, Replayer, ReplayError
from workers.deadletters.report import ReplayOptions
from workers.delivery.fake import FakeDownstream
from workers.messaging.replay_headers import ReplayMark
from workers.store.archive import actions, outcomes
from workers.store.archive.records import DeadLetterFilter
from workers.store.tables import dead_letter_actions, dead_letter_replays, dead_letters

REASON = "ERP fixed the 400 on order export (INC-42)"
NO_WAIT = ReplayOptions(wait=0)


class Erp:
    """Refuses (400) orders whose id is in `refused`, answers `status` for those in `failing`, accepts the rest."""

    def __init__(self, fake: PortFaults) -> None:
        self.refused: set[str] = set()
        self.failing: dict[str, int] = {}
        fake.responder = self.answer

    def answer(self, _path: str, payload: Mapping[str, Any], _key: str, _attempt: int) -> int:
        order_id = str(payload.get("order_id"))
        if order_id in self.failing:
            return self.failing[order_id]
        return 400 if order_id in self.refused else 200


@pytest.fixture
def erp_rules(faults: PortFaults) -> Erp:
    """The ERP port fails inside the handler (a message-level failure, as these replay stories need)."""
    return Erp(faults)


class Publisher:
    """Publishes into the fleet's broker and records every copy; `settle` makes each copy's outcome known
    (handled and, if it failed, archived) before the next is sent; `deliver=False` publishes into a void
    (taken, never consumed). `before` and `after` run around each publish."""

    def __init__(self, fleet: FleetRun, *, settle: bool = True, deliver: bool = True) -> None:
        self.fleet = fleet
        self.settle = settle and deliver
        self.deliver = deliver
        self.sent: list[tuple[int, str, str, bytes]] = []
        self.before: Callable[[int], None] | None = None
        self.after: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        mark = ReplayMark.from_headers(headers)
        assert mark is not None, "every copy carries its replay mark"
        if self.before is not None:
            self.before(mark.dead_letter_id)
        if self.deliver:
            self.fleet.broker.publish(exchange, routing_key, body, headers)
        with self._lock:
            self.sent.append((mark.dead_letter_id, exchange, routing_key, body))
        if self.settle:
            self.fleet.settle()
        if self.after is not None:
            self.after(mark.dead_letter_id)

    def copies(self) -> Counter[int]:
        return Counter(dead_letter_id for dead_letter_id, *_ in self.sent)


class Crash(BaseException):
    """The replaying process dies (kill -9): nothing after this point runs."""


def replayer(fleet: FleetRun, publisher: Any, **kwargs: Any) -> Replayer:
    return Replayer(fleet.engine, publisher, exchange=fleet.settings.exchange, registry=REGISTRY, **kwargs)


def refused_orders(fleet: FleetRun, rules: Erp, *order_ids: str) -> list[dict[str, Any]]:
    """Dead letters of orders the ERP refused (one failure group), oldest first."""
    rules.refused.update(order_ids)
    fleet.run(*(envelope(order_v2(order_id, [("MUG-BLUE", 1)])) for order_id in order_ids))
    rules.refused.difference_update(order_ids)
    return [record for record in fleet.dead_letters() if record["dedup_key"] in order_ids]


def group_of(records: list[dict[str, Any]]) -> DeadLetterFilter:
    [fingerprint] = {record["fingerprint"] for record in records}
    return DeadLetterFilter(fingerprint=fingerprint)


def statuses(fleet: FleetRun) -> dict[int, str]:
    with fleet.engine.connect() as connection:
        return {int(i): str(s) for i, s in connection.execute(select(dead_letters.c.id, dead_letters.c.status))}


def exports(erp: FakeDownstream) -> Counter[str]:
    """How many times the ERP applied each order export (anything above 1 is a double effect)."""
    return Counter(key for _path, key, status in erp.requests if 200 <= status < 300)


# -- outcomes --------------------------------------------------------------------------------------


def test_a_replayed_group_is_applied_once_each_and_every_record_is_resolved_with_its_outcome(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    publisher = Publisher(fleet)

    report = replayer(fleet, publisher).start(group_of(records), actor="ana", reason=REASON, options=NO_WAIT)

    assert report.status == actions.FINISHED and report.ok, report
    assert (report.selected, report.sent) == (3, 3)
    assert report.outcomes[outcomes.APPLIED] == 3
    assert exports(erp) == {f"order-export:ORD-{n}": 1 for n in (1, 2, 3)}
    assert set(fleet.orders()) == {"ORD-1", "ORD-2", "ORD-3"}
    assert all(statuses(fleet)[r["id"]] == "resolved" for r in records)
    assert [(exchange, key) for _, exchange, key, _ in publisher.sent] == [("commerce.events", "order.created")] * 3
    [shown] = [r for r in fleet.dead_letters() if r["id"] == records[0]["id"]]
    assert [e["action"] for e in shown["history"]] == ["archived", "replayed", "replay-applied"]
    assert shown["history"][1]["actor"] == "ana" and shown["history"][1]["reason"] == REASON
    assert [(r["actor"], r["outcome"]) for r in shown["replays"]] == [("ana", outcomes.APPLIED)]


def test_a_body_no_contract_can_route_goes_back_to_its_flow_queue_and_its_re_failure_is_linked(
    fleet: FleetRun,
) -> None:
    fleet.run(b'{"message_id": "m-cut", "contract": "order.created", "data": {')
    [record] = fleet.dead_letters()
    publisher = Publisher(fleet)

    report = replayer(fleet, publisher).start(
        DeadLetterFilter(ids=(record["id"],)), actor="a", reason="r", options=NO_WAIT
    )

    assert [(exchange, key) for _id, exchange, key, _body in publisher.sent] == [("", "orders")]
    [again] = report.failed_again
    assert (again["stage"], again["same_fingerprint"]) == ("decode", True)


def test_a_resend_applied_meanwhile_closes_the_record_so_no_replay_sends_a_second_effect(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-10")
    fleet.run(envelope(order_v2("ORD-10", [("MUG-BLUE", 1)])))  # the producer sent it again, and it went through

    assert statuses(fleet)[record["id"]] == "resolved", "superseded by the resend"
    publisher = Publisher(fleet)
    replayer(fleet, publisher).start(DeadLetterFilter(ids=(record["id"],)), actor="ana", reason=REASON, options=NO_WAIT)
    assert publisher.sent == []
    assert exports(erp) == {"order-export:ORD-10": 1}


def test_a_copy_of_an_event_applied_after_the_replay_was_claimed_is_a_duplicate_with_no_second_effect(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-10")
    publisher = Publisher(fleet)
    resend = envelope(order_v2("ORD-10", [("MUG-BLUE", 1)]))

    def resent_first(_dead_letter_id: int) -> None:  # the producer's resend goes through before the copy
        fleet.run(resend)

    publisher.before = resent_first

    report = replayer(fleet, publisher).start(
        DeadLetterFilter(ids=(record["id"],)), actor="ana", reason=REASON, options=NO_WAIT
    )

    assert report.outcomes[outcomes.DUPLICATE] == 1 and report.outcomes[outcomes.APPLIED] == 0
    assert exports(erp) == {"order-export:ORD-10": 1}
    assert statuses(fleet)[record["id"]] == "resolved"


def test_a_re_failure_after_a_replay_is_a_new_record_linked_to_the_one_replayed(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-20")
    erp_rules.refused.add("ORD-20")  # still refused: the same bytes fail again

    report = replayer(fleet, Publisher(fleet)).start(
        DeadLetterFilter(ids=(record["id"],)), actor="ana", reason=REASON, options=NO_WAIT
    )

    records = {r["id"]: r for r in fleet.dead_letters()}
    assert len(records) == 2, "the re-failure is archived, not ignored as a copy of the original"
    [new] = [r for r in records.values() if r["id"] != record["id"]]
    assert (new["replay_of"], new["replay_action_id"], new["status"]) == (record["id"], report.action_id, "open")
    assert new["dead_letter_key"] != record["dead_letter_key"]
    assert new["body"] == record["body"]
    original = records[record["id"]]
    assert original["status"] == "replayed"
    assert original["replayed_as"] == [new["id"]]
    assert [(r["outcome"], r["new_dead_letter_id"]) for r in original["replays"]] == [
        (outcomes.FAILED_AGAIN, new["id"])
    ]
    assert original["history"][-1]["action"] == "replay-failed-again"
    assert [f["same_fingerprint"] for f in report.failed_again] == [True]
    assert not report.ok


def test_when_the_newest_copy_is_applied_every_record_it_was_replayed_from_is_resolved(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    [first] = refused_orders(fleet, erp_rules, "ORD-21")
    erp_rules.refused.add("ORD-21")
    replayer(fleet, Publisher(fleet)).start(
        DeadLetterFilter(ids=(first["id"],)), actor="a", reason="r", options=NO_WAIT
    )
    [second] = [r for r in fleet.dead_letters() if r["replay_of"] == first["id"]]
    erp_rules.refused.clear()

    replayer(fleet, Publisher(fleet)).start(
        DeadLetterFilter(ids=(second["id"],)), actor="a", reason="r", options=NO_WAIT
    )

    assert statuses(fleet) == {first["id"]: "resolved", second["id"]: "resolved"}
    assert list(fleet.orders()) == ["ORD-21"]


def test_replay_outcomes_are_counted_in_flowfleet_replays_total(fleet: FleetRun, erp_rules: Erp) -> None:
    def replays(result: str) -> float:
        return METRICS.get_sample_value("flowfleet_replays_total", {"flow": "orders", "result": result}) or 0.0

    applied, failed = replays("applied"), replays("failed_again")
    records = refused_orders(fleet, erp_rules, "ORD-30", "ORD-31")
    erp_rules.failing["ORD-31"] = 503  # fails again, but not as before: the replay goes on whatever the order

    replayer(fleet, Publisher(fleet)).start(
        DeadLetterFilter(ids=tuple(r["id"] for r in records)), actor="a", reason="r", options=NO_WAIT
    )

    assert (replays("applied") - applied, replays("failed_again") - failed) == (1, 1)


# -- stopping --------------------------------------------------------------------------------------


def test_the_replay_stops_by_itself_when_a_copy_fails_again_with_its_originals_fingerprint(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-40", "ORD-41", "ORD-42")
    erp_rules.refused.update({"ORD-40", "ORD-41", "ORD-42"})  # the cause is not fixed
    publisher = Publisher(fleet)

    report = replayer(fleet, publisher).start(group_of(records), actor="a", reason="r", options=NO_WAIT)

    assert report.status == actions.STOPPED
    assert "same fingerprint" in (report.note or "") and "--resume" in (report.note or "")
    assert report.sent == 1 and len(publisher.sent) == 1
    assert [statuses(fleet)[r["id"]] for r in records[1:]] == ["open", "open"], "the rest were not touched"


def test_a_slow_replay_notices_a_re_failure_that_came_in_while_it_waited_for_the_next_slot(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-45", "ORD-46")
    erp_rules.refused.update({"ORD-45", "ORD-46"})
    clock = FakeClock()
    publisher = Publisher(fleet, settle=False)  # the outcome is not known when the publish returns ...
    publisher.after = lambda _id: clock.sleep(0)
    settled: list[bool] = []

    def settle_while_waiting(seconds: float) -> None:  # ... but arrives while the replayer waits for its slot
        clock.sleep(seconds)
        if not settled:
            settled.append(fleet.settle() > 0)

    report = replayer(fleet, publisher, clock=clock, sleep=settle_while_waiting).start(
        group_of(records), actor="a", reason="r", options=ReplayOptions(rate=0.5, wait=0)
    )

    assert settled == [True]
    assert report.status == actions.STOPPED and len(publisher.sent) == 1


def test_a_copy_failing_again_for_another_reason_does_not_stop_the_replay_but_is_reported(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-43", "ORD-44")
    erp_rules.failing["ORD-43"] = 503  # now down instead of refusing: a transient error, retried, then exhausted

    report = replayer(fleet, Publisher(fleet)).start(group_of(records), actor="a", reason="r", options=NO_WAIT)

    assert report.status == actions.FINISHED and report.sent == 2
    assert report.outcomes[outcomes.APPLIED] == 1 and report.outcomes[outcomes.FAILED_AGAIN] == 1
    [again] = report.failed_again
    assert not again["same_fingerprint"] and again["error_type"] == "TransientError"


def test_a_canary_that_is_applied_lets_the_rest_go(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-5{n}" for n in range(4)))

    report = replayer(fleet, Publisher(fleet)).start(
        group_of(records), actor="a", reason="r", options=ReplayOptions(canary=2, wait=0)
    )

    assert report.ok and report.sent == 4
    with fleet.engine.connect() as connection:
        assert actions.get_action(connection, report.action_id)["counts"]["canary_passed"] is True  # type: ignore[index]


def test_a_canary_whose_outcome_never_comes_holds_the_rest_back(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-6{n}" for n in range(4)))
    silent = Publisher(fleet, deliver=False)
    clock = FakeClock()

    report = replayer(fleet, silent, clock=clock, sleep=clock.sleep).start(
        group_of(records), actor="a", reason="r", options=ReplayOptions(canary=2, canary_wait=30, wait=0)
    )

    assert report.status == actions.STOPPED and "not known after 30 s" in (report.note or "")
    assert len(silent.sent) == 2
    assert clock.now >= 30


# -- the rate --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_copies_are_sent_on_the_rates_schedule(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-7{n}" for n in range(6)))
    clock, times = FakeClock(), []
    publisher = Publisher(fleet, settle=False)
    publisher.before = lambda _id: times.append(clock.now)

    report = replayer(fleet, publisher, clock=clock, sleep=clock.sleep).start(
        group_of(records), actor="a", reason="r", options=ReplayOptions(rate=5, wait=0)
    )

    assert report.sent == 6
    assert [round(t - times[0], 6) for t in times] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report.achieved_rate == pytest.approx(5.0)
    fleet.settle()


def test_a_stalled_send_is_not_caught_up_in_a_burst(fleet: FleetRun, erp_rules: Erp) -> None:
    """The broker stalls the third copy's publish for 1.5 s: the copies after it keep the rate's spacing
    (at most one slot made up), instead of going out back to back until the schedule is met again."""
    records = refused_orders(fleet, erp_rules, *(f"ORD-7{n}" for n in range(8)))
    clock, times = FakeClock(), []
    publisher = Publisher(fleet, settle=False)

    def stall(_id: int) -> None:
        times.append(clock.now)
        if len(times) == 3:
            clock.now += 1.5

    publisher.before = stall
    replayer(fleet, publisher, clock=clock, sleep=clock.sleep).start(
        group_of(records), actor="a", reason="r", options=ReplayOptions(rate=5, wait=0)
    )

    after_stall = [round(b - a, 6) for a, b in itertools.pairwise(times[3:])]
    assert len(times) == 8
    assert all(gap >= 0.2 for gap in after_stall[1:]), after_stall
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 6
    fleet.settle()


# -- interrupts, crashes, resumes ------------------------------------------------------------------


def test_an_interrupted_replay_resumes_where_it_stopped_and_sends_nothing_twice(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-8{n}" for n in range(5)))
    publisher = Publisher(fleet)
    first = replayer(fleet, publisher)
    publisher.after = lambda _id: first.interrupt() if len(publisher.sent) == 2 else None

    interrupted = first.start(group_of(records), actor="ana", reason="r", options=NO_WAIT)
    resumed = replayer(fleet, publisher).resume(interrupted.action_id, actor="bo")

    assert (interrupted.status, interrupted.sent) == (actions.INTERRUPTED, 2)
    assert "--resume" in (interrupted.note or "")
    assert (resumed.status, resumed.selected, resumed.sent, resumed.resent) == (actions.FINISHED, 3, 3, 0)
    assert publisher.copies() == {r["id"]: 1 for r in records}
    assert exports(erp) == {f"order-export:ORD-8{n}": 1 for n in range(5)}
    assert resumed.outcomes[outcomes.APPLIED] == 5


def test_a_resume_may_go_on_at_another_rate(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-8{n}" for n in range(4)))
    clock, times = FakeClock(), []
    publisher = Publisher(fleet, settle=False)
    first = replayer(fleet, publisher, clock=clock, sleep=clock.sleep)
    publisher.after = lambda _id: first.interrupt() if len(publisher.sent) == 2 else None
    interrupted = first.start(group_of(records), actor="a", reason="r", options=ReplayOptions(rate=1, wait=0))
    publisher.after, publisher.before = None, lambda _id: times.append(clock.now)

    replayer(fleet, publisher, clock=clock, sleep=clock.sleep).resume(
        interrupted.action_id, actor="b", changes={"rate": 10}
    )

    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [0.1]
    with fleet.engine.connect() as connection:
        assert actions.get_action(connection, interrupted.action_id)["options"]["rate"] == 10  # type: ignore[index]
    fleet.settle()


def test_after_a_crash_a_sent_copy_in_doubt_is_not_sent_again_once_its_outcome_is_known(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-90", "ORD-91", "ORD-92")
    publisher = Publisher(fleet)

    def crash_after_the_second_publish(_id: int) -> None:
        if len(publisher.sent) == 2:
            raise Crash  # published and confirmed, but the confirm was never recorded

    publisher.after = crash_after_the_second_publish
    with pytest.raises(Crash):
        replayer(fleet, publisher).start(group_of(records), actor="a", reason="r", options=NO_WAIT)
    publisher.after = None
    action_id = _only_action(fleet)

    resumed = replayer(fleet, publisher, silent_after=0).resume(action_id, actor="b")

    assert (resumed.sent, resumed.resent) == (1, 0)
    assert publisher.copies() == {r["id"]: 1 for r in records}
    assert exports(erp) == {f"order-export:ORD-9{n}": 1 for n in range(3)}


def test_after_a_crash_a_claimed_copy_that_never_went_out_is_sent_on_resume_once(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-93", "ORD-94")
    publisher = Publisher(fleet)

    def crash_before_publishing(_id: int) -> None:
        raise Crash  # claimed and committed, then dead before the publish

    publisher.before = crash_before_publishing
    with pytest.raises(Crash):
        replayer(fleet, publisher).start(group_of(records), actor="a", reason="r", options=NO_WAIT)
    publisher.before = None

    resumed = replayer(fleet, publisher, silent_after=0).resume(_only_action(fleet), actor="b")

    assert (resumed.resent, resumed.sent) == (1, 2)
    assert publisher.copies() == {r["id"]: 1 for r in records}
    assert exports(erp) == {"order-export:ORD-93": 1, "order-export:ORD-94": 1}


def test_a_replay_still_beating_its_heartbeat_cannot_be_resumed_by_another_process(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-95")
    publisher = Publisher(fleet)
    publisher.before = lambda _id: (_ for _ in ()).throw(Crash)
    with pytest.raises(Crash):
        replayer(fleet, publisher).start(group_of(records), actor="a", reason="r", options=NO_WAIT)

    with pytest.raises(ReplayError, match="still running in another process"):
        replayer(fleet, publisher, silent_after=60).resume(_only_action(fleet), actor="b")
    with pytest.raises(ReplayError, match="no action #999"):
        replayer(fleet, publisher).resume(999, actor="b")


def test_a_finished_replay_cannot_be_resumed(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-96")
    report = replayer(fleet, Publisher(fleet)).start(group_of(records), actor="a", reason="r", options=NO_WAIT)

    with pytest.raises(ReplayError, match="finished: there is nothing to resume"):
        replayer(fleet, Publisher(fleet)).resume(report.action_id, actor="b")


def _only_action(fleet: FleetRun) -> int:
    with fleet.engine.connect() as connection:
        [action_id] = connection.execute(select(dead_letter_actions.c.id)).scalars()
    return int(action_id)


# -- what the broker refuses -----------------------------------------------------------------------


class Refusing(Publisher):
    def __init__(self, fleet: FleetRun, refuse: set[int]) -> None:
        super().__init__(fleet)
        self.refuse = refuse

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        mark = ReplayMark.from_headers(headers)
        if mark is not None and mark.dead_letter_id in self.refuse:
            raise LookupError(f"unroutable: no queue for {routing_key!r}")
        super().publish(exchange, routing_key, body, headers)


def test_a_copy_the_broker_refuses_leaves_its_record_open_and_is_reported(fleet: FleetRun, erp_rules: Erp) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-A1", "ORD-A2")
    refused = records[0]["id"]

    report = replayer(fleet, Refusing(fleet, {refused})).start(
        group_of(records), actor="a", reason="r", options=NO_WAIT
    )

    assert report.not_published == {refused: "LookupError: unroutable: no queue for 'order.created'"}
    assert report.sent == 1 and not report.ok
    assert statuses(fleet)[refused] == "open"
    assert report.outcomes[outcomes.NOT_PUBLISHED] == 1


def test_a_broker_that_refuses_everything_interrupts_the_replay_so_it_can_be_resumed(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-B{n}" for n in range(MAX_REFUSED_IN_A_ROW + 2)))
    everything = {r["id"] for r in records}

    report = replayer(fleet, Refusing(fleet, everything)).start(
        group_of(records), actor="a", reason="r", options=NO_WAIT
    )
    resumed = replayer(fleet, Publisher(fleet)).resume(report.action_id, actor="a")

    assert report.status == actions.INTERRUPTED and "refused 3 messages in a row" in (report.note or "")
    assert len(report.not_published) == MAX_REFUSED_IN_A_ROW
    assert resumed.sent == len(records) and resumed.outcomes[outcomes.APPLIED] == len(records)


# -- the frozen set and racing operators -----------------------------------------------------------


def test_the_set_is_frozen_at_the_start_and_the_report_counts_what_arrived_since(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, "ORD-C1", "ORD-C2", "ORD-C3")
    publisher = Publisher(fleet)
    late: list[dict[str, Any]] = []

    def new_failures_of_the_same_group(_id: int) -> None:
        if not late:
            late.extend(refused_orders(fleet, erp_rules, "ORD-C8", "ORD-C9"))

    publisher.after = new_failures_of_the_same_group

    report = replayer(fleet, publisher).start(group_of(records), actor="a", reason="r", options=NO_WAIT)

    assert {r["fingerprint"] for r in late} == {records[0]["fingerprint"]}, "the newcomers are of the same group"
    assert report.sent == 3 and report.arrived_since == 2
    assert set(publisher.copies()) == {r["id"] for r in records}
    assert [statuses(fleet)[r["id"]] for r in late] == ["open", "open"]


def test_two_operators_replaying_the_same_group_at_once_send_each_dead_letter_once(
    fleet: FleetRun, erp: FakeDownstream, erp_rules: Erp
) -> None:
    records = refused_orders(fleet, erp_rules, *(f"ORD-D{n:02d}" for n in range(30)))
    publisher = Publisher(fleet, settle=False)
    reports: list[Any] = []

    def operator(name: str) -> None:
        reports.append(replayer(fleet, publisher).start(group_of(records), actor=name, reason="r", options=NO_WAIT))

    threads = [threading.Thread(target=operator, args=(name,)) for name in ("ana", "bo")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    fleet.settle()

    assert publisher.copies() == {r["id"]: 1 for r in records}
    assert sum(r.sent for r in reports) == 30
    assert sorted(len(r.taken) for r in reports) == sorted(30 - r.sent for r in reports)
    assert exports(erp) == {f"order-export:ORD-D{n:02d}": 1 for n in range(30)}
    with fleet.engine.connect() as connection:
        claims = Counter(connection.execute(select(dead_letter_replays.c.dead_letter_id)).scalars())
    assert set(claims.values()) == {1}, "each dead letter was claimed by exactly one of the two actions"


def test_a_copy_is_the_archived_body_byte_for_byte_so_its_message_id_and_dedup_key_are_kept(
    fleet: FleetRun, erp_rules: Erp
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-E1")
    publisher = Publisher(fleet)

    replayer(fleet, publisher).start(DeadLetterFilter(ids=(record["id"],)), actor="a", reason="r", options=NO_WAIT)

    [(_id, _exchange, _key, body)] = publisher.sent
    assert body == record["body"]
    assert message_id_of(body) == record["message_id"]
