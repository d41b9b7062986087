"""The actor body every flow shares: decode, validate, upcast, check age, claim the dedup key, apply.

A replayed copy (workers.messaging.replay_headers) also records its outcome, applied or duplicate, against the
replay that sent it, in the transaction of the dedup claim: the outcome commits with the effect. An applied
event also resolves the open dead letters it supersedes (workers.store.archive.superseded), in that transaction.

The handler's downstream ports are outbox recorders bound to that same transaction: a request becomes a
delivery row that commits with the effect, and the relay (workers.delivery) sends it after the commit.

That transaction is shared with the messages other worker threads apply at the same time, one savepoint
each (workers.runtime.group_commit): one commit for the group, each message's failure its own. The park
check and the read of the parked events an applied event releases are part of the message's unit too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from dramatiq.middleware import CurrentMessage
from sqlalchemy import Connection, Engine

from contracts.envelope import decode_envelope
from contracts.registry import ContractRegistry, ParsedEvent
from handlers.outcomes import Stale
from workers.failures import EventExpired
from workers.flows.flow import Flow
from workers.messaging.ingress import decode_body
from workers.messaging.replay_headers import ReplayMark
from workers.observability.metrics import Outcomes, replays_total
from workers.runtime.group_commit import GroupCommitter
from workers.store.archive.outcomes import APPLIED, DUPLICATE, record_replay_outcome
from workers.store.archive.parking import RELEASED, Parent, ParkedEvent, close, open_parent, park, releasable
from workers.store.archive.superseded import close_superseded
from workers.store.dedup import claim, was_applied
from workers.store.outbox.recorder import Cause, OutboxRecorder

logger = logging.getLogger("flowfleet.parking")


@dataclass(frozen=True)
class ParkedBehind:
    """The message was parked (row `parked_id`) behind an open dead letter of a record it depends on."""

    parked_id: int
    parent: Parent


@dataclass(frozen=True)
class Applied:
    """What a message's unit of work did: parked, or claimed (`first`: not a duplicate) and applied."""

    first: bool = False
    result: object = None
    #: Whether a replayed copy's outcome was recorded.
    replayed: bool = False
    recorders: dict[str, OutboxRecorder] = field(default_factory=dict)
    #: Parked events this one released: published again after the commit.
    releasable: list[ParkedEvent] = field(default_factory=list)
    parked: ParkedBehind | None = None


class FlowPipeline:
    """Callable as a Dramatiq actor: handles one delivery of one flow, raising on any failure."""

    def __init__(
        self,
        flow: Flow,
        *,
        registry: ContractRegistry,
        engine: Engine,
        outcomes: Outcomes,
        max_event_age: timedelta,
        deliveries_recorded: Callable[[Iterable[str]], None] = lambda _systems: None,
        publish_again: Callable[[str, bytes, dict[str, Any]], None] | None = None,
        committer: GroupCommitter | None = None,
    ) -> None:
        self.flow = flow
        #: Shared by the process's pipelines (workers.fleet) with group commit on; None: each message alone.
        self.committer = committer
        self.publish_again = publish_again
        self.registry = registry
        self.engine = engine
        self.deliveries_recorded = deliveries_recorded
        self.outcomes = outcomes
        self.max_event_age = max_event_age
        self.__name__ = flow.name

    def __call__(self, **delivery: Any) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None, "the CurrentMessage middleware is installed by workers.fleet"
        message.options["flow"] = self.flow.name
        event: dict[str, Any] = {}
        message.options["event"] = event
        replay = ReplayMark.from_headers(delivery.get("headers"))
        envelope = decode_envelope(decode_body(delivery))
        event.update(
            contract=envelope.contract,
            version=envelope.version,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            producer=envelope.producer,
        )
        parsed = self.registry.parse(envelope, flow=self.flow.name)
        event.update(dedup_key=parsed.dedup_key, business_keys=parsed.business_keys)
        age = datetime.now(UTC) - envelope.occurred_at
        if age > self.max_event_age:
            if self._already_applied(envelope.contract, parsed.dedup_key):
                if replay is not None:
                    with self.engine.begin() as connection:
                        recorded = record_replay_outcome(connection, replay, DUPLICATE)
                    self._replayed(recorded, DUPLICATE)
                self.outcomes.record(message.options, "duplicate")
                return
            raise EventExpired(
                f"event occurred {age.total_seconds() / 3600:.1f} h ago; the {self.flow.name} flow applies "
                f"events up to {self.max_event_age.total_seconds() / 3600:.1f} h old"
            )
        started = time.perf_counter()
        try:
            unit = partial(self._apply, parsed=parsed, replay=replay, delivery=delivery)
            applied = self.committer.run(unit) if self.committer is not None else self._alone(unit)
        except BaseException:
            self.outcomes.handled(self.flow.name, started, envelope.occurred_at)  # failures are timed too
            raise
        if applied.parked is not None:
            self._log_parked(applied.parked)
            return
        systems = [system for system, recorder in applied.recorders.items() if recorder.recorded]
        if systems:
            self.deliveries_recorded(systems)  # wakes a relay thread of each of these systems only
        self._replayed(applied.replayed, APPLIED if applied.first else DUPLICATE)
        self.outcomes.record(message.options, "processed" if applied.first else "duplicate")
        if applied.first:
            self.outcomes.handled(self.flow.name, started, envelope.occurred_at)
        if isinstance(applied.result, Stale):
            self.outcomes.stale(message.options, applied.result.reason)
        if applied.releasable:
            self._release(applied.releasable, envelope.contract, parsed.dedup_key)

    def _alone(self, unit: Callable[[Connection], Applied]) -> Applied:
        """The message's unit in a transaction of its own, on its own thread (group commit off)."""
        with self.engine.begin() as connection:
            return unit(connection)

    def _apply(
        self, connection: Connection, *, parsed: ParsedEvent, replay: ReplayMark | None, delivery: dict[str, Any]
    ) -> Applied:
        """The message's unit of work, in its group's transaction: park it behind an open dead letter it depends
        on, or claim the dedup key and apply the event; then read what waited on it (released after the commit).

        It may run on another worker thread (workers.runtime.group_commit): it logs nothing and reads no
        thread-local state."""
        envelope = parsed.envelope
        if replay is None:
            parked = self._park_if_waiting(connection, parsed, delivery)
            if parked is not None:
                return Applied(parked=parked)
        first = claim(
            connection,
            flow=self.flow.name,
            contract=envelope.contract,
            dedup_key=parsed.dedup_key,
            message_id=envelope.message_id,
            version=envelope.version,
        )
        recorders = self._recorders(connection, parsed)
        result = self.flow.apply(parsed, connection, recorders) if first else None
        if first:
            close_superseded(
                connection,
                flow=self.flow.name,
                contract=envelope.contract,
                dedup_key=parsed.dedup_key,
                message_id=envelope.message_id,
            )
        replayed = replay is not None and record_replay_outcome(connection, replay, APPLIED if first else DUPLICATE)
        waiting = (
            releasable(connection, contract=envelope.contract, dedup_key=parsed.dedup_key)
            if first and self.publish_again is not None
            else []
        )
        return Applied(first=first, result=result, replayed=replayed, recorders=recorders, releasable=waiting)

    def _park_if_waiting(
        self, connection: Connection, parsed: ParsedEvent, delivery: dict[str, Any]
    ) -> ParkedBehind | None:
        """Park the event behind an open dead letter it depends on, instead of spending its retries on it."""
        depends_on = self.registry.get(parsed.envelope.contract).depends_on
        if not depends_on or self.publish_again is None:
            return None
        parent = open_parent(connection, depends_on, parsed.business_keys)
        if parent is None:
            return None
        parked_id = park(
            connection,
            parent,
            flow=self.flow.name,
            contract=parsed.envelope.contract,
            message_id=parsed.envelope.message_id,
            dedup_key=parsed.dedup_key,
            business_keys=parsed.business_keys,
            body=decode_body(delivery),
            headers=delivery.get("headers") or {},
        )
        return ParkedBehind(parked_id, parent)

    def _log_parked(self, parked: ParkedBehind) -> None:
        parent = parked.parent
        logger.info(
            "parked #%d behind dead letter #%d (%s %s=%s)",
            parked.parked_id,
            parent.id,
            parent.contract,
            parent.key,
            parent.value,
        )

    def _release(self, waiting: list[ParkedEvent], contract: str, dedup_key: str) -> None:
        """Publish again, in the order they were parked, the events that waited on records now applied."""
        assert self.publish_again is not None, "only read when there is a way to publish them"
        for event in waiting:
            headers = {k: v for k, v in event.headers.items() if not k.startswith("x-")}
            self.publish_again(event.contract, event.body, headers)
            with self.engine.begin() as connection:
                close(connection, [event.id], RELEASED)
        logger.info("released %d parked event(s) that waited on %s %s", len(waiting), contract, dedup_key)

    def _recorders(self, connection: Connection, parsed: ParsedEvent) -> dict[str, OutboxRecorder]:
        """One outbox recorder per system the flow calls, bound to the dedup claim's transaction."""
        envelope = parsed.envelope
        cause = Cause(
            self.flow.name,
            envelope.contract,
            envelope.version,
            envelope.message_id,
            parsed.dedup_key,
            parsed.business_keys,
        )
        return {system: OutboxRecorder(connection, system, cause) for system in self.flow.systems}

    def _replayed(self, recorded: bool, result: str) -> None:
        if recorded:
            replays_total.labels(self.flow.name, result).inc()

    def _already_applied(self, contract: str, dedup_key: str) -> bool:
        """A late copy of an event that was applied in time is a duplicate, not a dead letter."""
        with self.engine.connect() as connection:
            return was_applied(connection, contract=contract, dedup_key=dedup_key)
