"""The actor body every flow shares: decode, validate, upcast, check age, claim the dedup key, apply.

A replayed copy (workers.messaging.replay_headers) also records its outcome, applied or duplicate, against the
replay that sent it, in the transaction of the dedup claim: the outcome commits with the effect. An applied
event also resolves the open dead letters it supersedes (workers.store.archive.superseded), in that transaction.

The handler's downstream ports are outbox recorders bound to that same transaction: a request becomes a
delivery row that commits with the effect, and the relay (workers.delivery) sends it after the commit.
"""

from __future__ import annotations

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
from workers.store.archive.superseded import close_superseded
from workers.store.dedup import claim, was_applied
from workers.store.outbox.recorder import Cause, OutboxRecorder


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
    ) -> None:
        self.flow = flow
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
        if any(recorder.recorded for recorder in recorders.values()):
            self.deliveries_recorded()
        self._replayed(replayed, APPLIED if first else DUPLICATE)
        self.outcomes.record(message.options, "processed" if first else "duplicate")
        if first:
            self.outcomes.applied(self.flow.name, started, envelope.occurred_at)
        if isinstance(result, Stale):
            self.outcomes.stale(message.options, result.reason)

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
