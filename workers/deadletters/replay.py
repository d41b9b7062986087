"""Replays dead letters into their flows so that nothing is sent twice: frozen set, claims, pacing, canary, resume.

Why it works this way:
- The set is frozen when the replay starts: the operator's filter plus a cutoff time (archived at or
  before it), both stored with the action. Dead letters that arrive while it runs are not replayed;
  the report counts them ("arrived since"), apart from the replay's own re-failures.
- Records are claimed one at a time (workers.store.archive.replays: open -> replayed, committed) right
  before their copy is published, so two operators replaying one group each send a disjoint part of
  it, and a crash leaves at most one message "in doubt" (claimed, confirm not recorded).
- The copy is the original body (a repair's edited one) with the original headers, published to the
  exchange with the contract name as routing key; a body whose contract cannot route it (undecodable,
  unknown contract) goes to its flow's queue through the default exchange. Persistent, mandatory,
  confirmed (FleetBroker.publish). message_id and data are unchanged, so the dedup claim makes an
  event that was applied meanwhile a duplicate, not a second effect.
- The copy carries a replay mark (workers.messaging.replay_headers); the workers record its outcome against
  the action. The replayer never consumes anything: it reads outcomes before each send (to stop when
  a copy fails again with its original's fingerprint), after the canary, and at the end.
- Pacing follows an absolute schedule, first send + n / rate, so a slow send does not push the rest
  later; after a stall longer than one slot (a broker that held a publish) the schedule moves on, making
  up one slot at most, so no second of the replay sends more than the rate and one.
- The runner beats a heartbeat each second: `--resume` takes over an action only when it is stopped,
  interrupted, or silent (its process died), and resends an in-doubt message only if no outcome for
  it arrives within the wait; the dedup key keeps even that resend to one effect.

Over 300 lines on purpose: it is one class whose steps (claim, send, pace, canary, stop, resume) share
one run's state and read top to bottom; its options and report are in workers.deadletters.report, the
copy's routing and headers in workers.deadletters.copies, and its SQL in workers.store.archive.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from contracts.registry import ContractRegistry
from workers.deadletters.copies import copy_headers, route
from workers.deadletters.report import Progress, ReplayOptions, ReplayReport
from workers.messaging.replay_headers import ReplayMark
from workers.store.archive.actions import (
    FINISHED,
    INTERRUPTED,
    REPAIR,
    REPLAY,
    RUNNING,
    STOPPED,
    create_action,
    finish_action,
    get_action,
    heartbeat,
    take_over,
    update_counts,
    update_options,
)
from workers.store.archive.audit import audit, now
from workers.store.archive.outcomes import APPLIED, DUPLICATE, PENDING
from workers.store.archive.records import DeadLetterFilter, count_dead_letters, matching_ids
from workers.store.archive.replays import (
    claim_for_replay,
    copy_source,
    first_outcomes,
    in_doubt,
    mark_not_published,
    mark_published,
    outcome_counts,
    refailures,
    replay_row,
)
from workers.store.archive.status import OPEN

#: Publishes refused in a row after which the replay stops as interrupted (the broker is down).
MAX_REFUSED_IN_A_ROW = 3
#: Longest single sleep, so interrupts and heartbeats are noticed quickly.
TICK_SECONDS = 0.2


class Publisher(Protocol):
    """Publishes raw bytes persistent and confirmed; raises if the broker did not take them (BrokerBase does)."""

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None: ...


class ReplayError(Exception):
    """The replay cannot start or resume; the message says why."""


class _Interrupted(Exception):
    pass


class _TakenOver(Exception):
    pass


@dataclass
class _Run:
    action_id: int
    kind: str
    options: ReplayOptions
    actor: str
    reason: str | None
    report: ReplayReport
    started_at: datetime
    body: bytes | None = None
    canary_passed: bool = False
    first_send: float | None = None
    last_send: float | None = None
    slots: int = 0
    #: Seconds the pacing schedule was moved on after stalls (never caught up in a burst).
    schedule_shift: float = 0.0
    refused_in_a_row: int = 0


class Replayer:
    """Runs replay and repair actions against one archive, publishing through one publisher."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        *,
        exchange: str,
        registry: ContractRegistry,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[Progress], None] | None = None,
        silent_after: float = 5.0,
        heartbeat_every: float = 1.0,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.exchange = exchange
        self.registry = registry
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.silent_after = silent_after
        self.heartbeat_every = heartbeat_every
        self.owner = uuid.uuid4().hex
        self._interrupted = threading.Event()
        self._last_beat = 0.0
        self._current_action: int | None = None

    def interrupt(self) -> None:
        """Stop after the message in hand (thread- and signal-safe); the action can be resumed."""
        self._interrupted.set()

    def start(
        self,
        where: DeadLetterFilter,
        *,
        actor: str,
        reason: str,
        options: ReplayOptions,
        kind: str = REPLAY,
        extra: Mapping[str, Any] | None = None,
    ) -> ReplayReport:
        """Freeze the set (filter + now as cutoff), record the action, and replay it."""
        cutoff = now()
        with self.engine.begin() as connection:
            action_id = create_action(
                connection,
                kind=kind,
                actor=actor,
                reason=reason,
                selection=replace(where, status=None).to_json(),
                cutoff=cutoff,
                options=options.to_json() | dict(extra or {}),
                owner=self.owner,
            )
            action = get_action(connection, action_id)
        assert action is not None
        return self._run(action, actor=actor)

    def resume(self, action_id: int, *, actor: str, changes: Mapping[str, Any] | None = None) -> ReplayReport:
        """Take over a stopped, interrupted or abandoned replay and finish it, sending nothing twice.

        `changes` (rate, wait) replace the options the replay started with, from now on.
        """
        silent_since = now() - timedelta(seconds=self.silent_after)
        with self.engine.begin() as connection:
            action = take_over(connection, action_id, self.owner, silent_since=silent_since)
            if action is None:
                raise ReplayError(self._why_not_resumable(get_action(connection, action_id), action_id))
            if changes:
                action["options"] = dict(action["options"]) | dict(changes)
                update_options(connection, action_id, action["options"])
        return self._run(action, actor=actor)

    def _why_not_resumable(self, action: dict[str, Any] | None, action_id: int) -> str:
        if action is None:
            return f"there is no action #{action_id}"
        if action["kind"] not in (REPLAY, REPAIR):
            return f"action #{action_id} is a {action['kind']}, not a replay"
        if action["status"] == RUNNING:
            return (
                f"replay #{action_id} is still running in another process (it said so within the last "
                f"{self.silent_after:.0f} s); if that process is gone, try again in a few seconds"
            )
        return f"replay #{action_id} is {action['status']}: there is nothing to resume"

    # -- the run ---------------------------------------------------------------------------------

    def _run(self, action: Mapping[str, Any], *, actor: str) -> ReplayReport:
        action_id, kind = int(action["id"]), str(action["kind"])
        options = ReplayOptions.from_json(action["options"])
        body = action["options"].get("body")
        run = _Run(
            action_id=action_id,
            kind=kind,
            options=options,
            actor=actor,
            reason=action["reason"],
            report=ReplayReport(action_id, kind),
            started_at=now(),
            body=None if body is None else str(body).encode("utf-8"),
            canary_passed=bool((action["counts"] or {}).get("canary_passed")),
        )
        where = DeadLetterFilter.from_json(action["selection"])
        frozen = replace(where, status=OPEN, archived_until=action["cutoff"])
        began = self.clock()
        self._last_beat, self._current_action = began, action_id
        with self.engine.connect() as connection:
            doubtful = in_doubt(connection, action_id)
            candidates = matching_ids(connection, frozen)
        run.report.selected = len(doubtful) + len(candidates)
        status, note = FINISHED, None
        try:
            note = self._settle_doubt(run, doubtful) or self._send_all(run, candidates) or self._wait_for_outcomes(run)
            status = STOPPED if note else FINISHED
        except _Interrupted as interrupted:
            status = INTERRUPTED
            note = str(interrupted) or (
                f"interrupted by the operator; resume with `flowfleet dlq replay --resume {action_id}`"
            )
        except _TakenOver:
            run.report.status, run.report.note = "taken_over", "another process took this replay over; it reports on it"
            return self._fill(run, where, action, began, finish=False)
        if status == STOPPED and note:
            note += f"; after fixing the cause, resume with `flowfleet dlq replay --resume {action_id}`"
        run.report.status, run.report.note = status, note
        return self._fill(run, where, action, began, finish=True)

    def _fill(
        self, run: _Run, where: DeadLetterFilter, action: Mapping[str, Any], began: float, *, finish: bool
    ) -> ReplayReport:
        report = run.report
        with self.engine.begin() as connection:
            report.outcomes = outcome_counts(connection, run.action_id)
            report.failed_again = refailures(connection, run.action_id)
            after = replace(where, status=None, archived_after=action["cutoff"], not_from_action=run.action_id)
            report.arrived_since = count_dead_letters(connection, after)
            if finish:
                earlier = dict(action["counts"] or {})
                counts = {
                    "selected": earlier.get("selected", report.selected),
                    **report.outcomes,
                    "taken": int(earlier.get("taken", 0)) + len(report.taken),
                    "resent": int(earlier.get("resent", 0)) + report.resent,
                    "arrived_since": report.arrived_since,
                    "canary_passed": run.canary_passed,
                    "runs": int(earlier.get("runs", 0)) + 1,
                }
                finish_action(
                    connection, run.action_id, self.owner, status=report.status, counts=counts, note=report.note
                )
        report.seconds = self.clock() - began
        if run.first_send is not None and run.last_send is not None and report.sent > 1:
            report.achieved_rate = (report.sent - 1) / max(run.last_send - run.first_send, 1e-9)
        return report

    def _settle_doubt(self, run: _Run, doubtful: list[int]) -> str | None:
        """In-doubt messages of an earlier run: wait for their outcome; send again those that get none."""
        if not doubtful:
            return None
        deadline = self.clock() + run.options.wait
        waiting = list(doubtful)
        while waiting and self.clock() < deadline:
            with self.engine.connect() as connection:
                waiting = [
                    i for i in waiting if (replay_row(connection, run.action_id, i) or {}).get("outcome") == PENDING
                ]
            if waiting:
                self._pause(TICK_SECONDS)
        for dead_letter_id in waiting:
            self._pace(run)
            if self._send(run, dead_letter_id, claim=False):
                run.report.resent += 1
        return None

    def _send_all(self, run: _Run, candidates: list[int]) -> str | None:
        for dead_letter_id in candidates:
            self._pace(run)
            why = self._why_stop(run)  # after the wait for the slot: what failed meanwhile counts
            if why:
                return why
            self._send(run, dead_letter_id, claim=True)
            if run.options.canary and not run.canary_passed:
                why = self._canary_gate(run)
                if why:
                    return why
        return None

    def _send(self, run: _Run, dead_letter_id: int, *, claim: bool) -> bool:
        """Claim (unless in doubt already), publish confirmed, record; True when the broker took it."""
        with self.engine.connect() as connection:
            record = copy_source(connection, dead_letter_id)
        exchange, routing_key = route(record, self.registry, self.exchange)
        detail = {"kind": run.kind, "exchange": exchange or "(default)", "routing_key": routing_key}
        with self.engine.begin() as connection:
            if not claim:
                audit(connection, dead_letter_id, run.actor, "replay-resent", reason=run.reason, detail=detail)
            elif not claim_for_replay(
                connection,
                action_id=run.action_id,
                dead_letter_id=dead_letter_id,
                actor=run.actor,
                reason=run.reason,
                detail=detail,
                body=run.body,
            ):
                run.report.taken.append(dead_letter_id)
                return False
        run.slots += 1
        headers = copy_headers(record["headers"] or {}, ReplayMark(dead_letter_id, run.action_id))
        try:
            self.publisher.publish(exchange, routing_key, run.body or bytes(record["body"]), headers)
        except Exception as error:  # any refusal: the record is open again and the report names it
            why = f"{type(error).__name__}: {error}"[:500]
            with self.engine.begin() as connection:
                mark_not_published(
                    connection, action_id=run.action_id, dead_letter_id=dead_letter_id, actor=run.actor, why=why
                )
            run.report.not_published[dead_letter_id] = why
            run.refused_in_a_row += 1
            if run.refused_in_a_row >= MAX_REFUSED_IN_A_ROW:
                raise _Interrupted(
                    f"the broker refused {run.refused_in_a_row} messages in a row (last: {why}); "
                    f"resume with `flowfleet dlq replay --resume {run.action_id}` when it is back"
                ) from None
            return False
        sent_at = self.clock()
        run.first_send = sent_at if run.first_send is None else run.first_send
        run.last_send = sent_at
        run.refused_in_a_row = 0
        with self.engine.begin() as connection:
            mark_published(connection, action_id=run.action_id, dead_letter_id=dead_letter_id)
        run.report.sent += 1
        if self.progress is not None:
            self.progress(Progress(run.action_id, run.report.sent, run.report.selected, len(run.report.taken)))
        return True

    def _why_stop(self, run: _Run) -> str | None:
        """A copy failed again with its original's fingerprint since this run began: stop sending."""
        self._tick()
        with self.engine.connect() as connection:
            again = [f for f in refailures(connection, run.action_id, since=run.started_at) if f["same_fingerprint"]]
        if not again:
            return None
        first = again[0]
        return (
            f"stopped: dead letter #{first['dead_letter_id']} failed again with the same fingerprint "
            f"{first['fingerprint']} (now #{first['new_dead_letter_id']}: {first['error_type']})"
        )

    def _canary_gate(self, run: _Run) -> str | None:
        """Once the canary is out, wait for its outcomes; go on only if every one was applied (or already was)."""
        with self.engine.connect() as connection:
            published = outcome_counts(connection, run.action_id)["published"]
        if published < run.options.canary:
            return None
        deadline = self.clock() + run.options.canary_wait
        while True:
            with self.engine.connect() as connection:
                outcomes = first_outcomes(connection, run.action_id, run.options.canary)
            failed = [o for o in outcomes if o not in (PENDING, APPLIED, DUPLICATE)]
            if failed:
                return f"stopped: the canary of {run.options.canary} did not pass ({', '.join(sorted(set(failed)))})"
            if len(outcomes) == run.options.canary and PENDING not in outcomes:
                run.canary_passed = True
                self._save_canary(run)
                return None
            if self.clock() >= deadline:
                return (
                    f"stopped: the canary's outcome was not known after {run.options.canary_wait:.0f} s "
                    "(is a worker consuming the flow?)"
                )
            self._pause(TICK_SECONDS)

    def _save_canary(self, run: _Run) -> None:
        """Remember the canary passed, so a resume does not hold the rest back again."""
        with self.engine.begin() as connection:
            update_counts(connection, run.action_id, canary_passed=True)

    def _wait_for_outcomes(self, run: _Run) -> str | None:
        """After the last send: wait (up to options.wait) until every published copy has its outcome."""
        deadline = self.clock() + run.options.wait
        while self.clock() < deadline:
            with self.engine.connect() as connection:
                pending = outcome_counts(connection, run.action_id)[PENDING]
            if not pending:
                break
            self._pause(TICK_SECONDS)
        return None

    # -- time ------------------------------------------------------------------------------------

    def _pace(self, run: _Run) -> None:
        """Wait for this send's slot on the schedule first send + n / rate."""
        rate = run.options.rate
        if not rate or run.first_send is None:
            self._tick()
            return
        interval = 1 / rate
        due = run.first_send + run.schedule_shift + run.slots * interval
        late = self.clock() - due
        if late > interval:  # a stall: the sends it held back are not caught up in a burst
            run.schedule_shift += late - interval
            due += late - interval
        while (left := due - self.clock()) > 0:
            self._pause(min(left, TICK_SECONDS))

    def _pause(self, seconds: float) -> None:
        self._tick()
        self.sleep(seconds)
        self._tick()

    def _tick(self) -> None:
        """Notice an interrupt; beat the heartbeat when one is due (and notice a takeover)."""
        if self._interrupted.is_set():
            raise _Interrupted()
        moment = self.clock()
        if moment - self._last_beat < self.heartbeat_every:
            return
        self._last_beat = moment
        action_id = self._current_action
        if action_id is None:
            return
        with self.engine.begin() as connection:
            alive = heartbeat(connection, action_id, self.owner)
        if not alive:
            raise _TakenOver()
