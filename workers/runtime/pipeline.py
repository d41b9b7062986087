"""The actor body every flow shares: decode, validate, upcast, check age, claim the dedup key, apply.

A replayed copy (workers.messaging.replay_headers) also records its outcome, applied or duplicate, against the
replay that sent it, in the transaction of the dedup claim: the outcome commits with the effect. An applied
event also resolves the open dead letters it supersedes (workers.store.archive.superseded), in that transaction.

The handler's downstream ports are outbox recorders bound to that same transaction: a request becomes a
delivery row that commits with the effect, and the relay (workers.delivery) sends it after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
from workers.store.archive.outcomes import APPLIED, DUPLICATE, record_replay_outcome
from workers.store.archive.parking import RELEASED, close, open_parent, park, releasable
from workers.store.archive.superseded import close_superseded
from workers.store.dedup import claim, was_applied
from workers.store.outbox.recorder import Cause, OutboxRecorder

logger = logging.getLogger("flowfleet.parking")


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
        deliveries_recorded: Callable[[], None] = lambda: None,
        publish_again: Callable[[str, bytes, dict[str, Any]], None] | None = None,
    ) -> None:
        self.flow = flow
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
        if replay is None and self._parked(parsed, delivery):
            return
        started = time.perf_counter()
        try:
            first, result, replayed, recorders = self._apply(parsed, replay)
        except BaseException:
            self.outcomes.handled(self.flow.name, started, envelope.occurred_at)  # failures are timed too
            raise
        if any(recorder.recorded for recorder in recorders.values()):
            self.deliveries_recorded()
        self._replayed(replayed, APPLIED if first else DUPLICATE)
        self.outcomes.record(message.options, "processed" if first else "duplicate")
        if first:
            self.outcomes.handled(self.flow.name, started, envelope.occurred_at)
        if isinstance(result, Stale):
            self.outcomes.stale(message.options, result.reason)
        if first:
            self._release_waiting_on(envelope.contract, parsed.dedup_key)

    def _apply(
        self, parsed: ParsedEvent, replay: ReplayMark | None
    ) -> tuple[bool, object, bool, dict[str, OutboxRecorder]]:
        """Claim the dedup key and apply the event in one transaction: whether it was the first, the handler's
        result, whether a replay's outcome was recorded, and the outbox recorders it filled."""
        envelope = parsed.envelope
        with self.engine.begin() as connection:
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
        return first, result, replayed, recorders

    def _parked(self, parsed: ParsedEvent, delivery: dict[str, Any]) -> bool:
        """Park the event behind an open dead letter it depends on, instead of spending its retries on it."""
        depends_on = self.registry.get(parsed.envelope.contract).depends_on
        if not depends_on or self.publish_again is None:
            return False
        with self.engine.begin() as connection:
            parent = open_parent(connection, depends_on, parsed.business_keys)
            if parent is None:
                return False
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
        logger.info(
            "parked #%d behind dead letter #%d (%s %s=%s)",
            parked_id,
            parent.id,
            parent.contract,
            parent.key,
            parent.value,
        )
        return True

    def _release_waiting_on(self, contract: str, dedup_key: str) -> None:
        """Publish again, in the order they were parked, the events that waited on records now applied."""
        if self.publish_again is None:
            return
        with self.engine.connect() as connection:
            waiting = releasable(connection, contract=contract, dedup_key=dedup_key)
        for event in waiting:
            headers = {k: v for k, v in event.headers.items() if not k.startswith("x-")}
            self.publish_again(event.contract, event.body, headers)
            with self.engine.begin() as connection:
                close(connection, [event.id], RELEASED)
        if waiting:
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
