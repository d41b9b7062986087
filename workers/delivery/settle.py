"""Recording a request's outcome in one short transaction: delivered, retried, throttled or dead-lettered.

The breaker is moved in the same transaction: a transient failure counts towards opening it, a success (or
an answer that proves the system is up, such as a permanent 4xx) closes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from workers.delivery.backoff import backoff_seconds
from workers.delivery.gate import ControlGate
from workers.delivery.sending import DELIVERED, PERMANENT, THROTTLED, Sent
from workers.observability.delivery_metrics import breaker_transitions_total
from workers.observability.delivery_reports import report_delivery_dead_letter
from workers.observability.metrics import deliveries_total
from workers.store.outbox.controls import aware
from workers.store.outbox.dead_letters import dead_letter_delivery, delivery_fingerprint
from workers.store.outbox.outcomes import mark_delivered, retry_later, throttle
from workers.store.outbox.redelivery import resolve_after_delivery
from workers.store.outbox.system_state import record_failure, record_success

logger = logging.getLogger("flowfleet.delivery")
#: A throttled delivery waits at least this long when the other side named no Retry-After.
THROTTLE_FLOOR_SECONDS = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long a system's deliveries are retried, and how the waits between tries grow."""

    budgets: Mapping[str, timedelta]
    min_backoff_ms: int = 1000
    max_backoff_ms: int = 300_000
    breaker_threshold: int = 5
    default_budget: timedelta = timedelta(hours=24)

    def budget(self, system: str) -> timedelta:
        return self.budgets.get(system, self.default_budget)


class Settler:
    """Records outcomes for one relay process (`owner`), only for deliveries whose lease it still holds."""

    def __init__(self, engine: Engine, gate: ControlGate, policy: RetryPolicy, owner: str) -> None:
        self.engine = engine
        self.gate = gate
        self.policy = policy
        self.owner = owner

    def settle(self, row: dict[str, Any], sent: Sent) -> str:
        """Record `sent` for the claimed `row`; return the result counted in flowfleet_deliveries_total."""
        system = str(row["system"])
        now = datetime.now(UTC)
        archived: list[tuple[int, str, str]] = []  # (dead letter, error type, message) to report after commit
        with self.engine.begin() as connection:
            if sent.result == DELIVERED:
                held = mark_delivered(connection, int(row["id"]), self.owner, now)
                if held:
                    resolve_after_delivery(connection, row.get("dead_letter_id"), now=now)
                result = "delivered"
                closed = self._after_answer(connection, system, now)
            elif sent.result == THROTTLED:
                wait = max(sent.retry_after or 0.0, THROTTLE_FLOOR_SECONDS)
                at = now + timedelta(seconds=wait)
                held = throttle(connection, int(row["id"]), self.owner, at=at, error=sent.message)
                result, closed = "throttled", None
            elif sent.result == PERMANENT:
                held = self._dead_letter(
                    connection, row, error_type=sent.error_type, message=sent.message, now=now, archived=archived
                )
                result = "dead_lettered"
                closed = self._after_answer(connection, system, now)
            else:
                held, result, closed = self._transient(connection, row, sent, now, archived)
        for dead_letter_id, error_type, message in archived:
            report_delivery_dead_letter(
                row,
                dead_letter_id=dead_letter_id,
                fingerprint=delivery_fingerprint(row, error_type),
                message=message,
            )
        if closed is not None:
            self.gate.forget(system)
        if not held:
            logger.warning("delivery %s to %s: lease lost before its outcome was recorded", row["id"], system)
            result = "lease_lost"
        deliveries_total.labels(system, result).inc()
        return result

    def _transient(
        self, connection: Any, row: dict[str, Any], sent: Sent, now: datetime, archived: list[tuple[int, str, str]]
    ) -> tuple[bool, str, None]:
        system = str(row["system"])
        probing = not self.gate.closed(system)
        opened = record_failure(connection, system, threshold=self.policy.breaker_threshold, now=now)
        self.gate.forget(system)
        if opened:
            breaker_transitions_total.labels(system, "opened").inc()
            logger.warning(
                "circuit breaker for %s %s: %s",
                system,
                "re-opened, the probe failed" if probing else "opened",
                sent.message,
            )
        first_failed = aware(row.get("first_failed_at")) or now
        budget = self.policy.budget(system)
        if now - first_failed >= budget:
            message = (
                f"delivery budget of {_duration(budget)} spent after "
                f"{int(row.get('attempts') or 0) + 1} attempts; final error: {sent.message}"
            )
            held = self._dead_letter(
                connection, row, error_type="DeliveryBudgetSpent", message=message, now=now, archived=archived
            )
            return held, "dead_lettered", None
        attempts = int(row.get("attempts") or 0) + 1
        wait = backoff_seconds(
            attempts,
            min_ms=self.policy.min_backoff_ms,
            max_ms=self.policy.max_backoff_ms,
            retry_after=sent.retry_after,
        )
        at = now + timedelta(seconds=wait)
        return retry_later(connection, int(row["id"]), self.owner, at=at, error=sent.message, now=now), "retried", None

    def _dead_letter(
        self,
        connection: Any,
        row: dict[str, Any],
        *,
        error_type: str,
        message: str,
        now: datetime,
        archived: list[tuple[int, str, str]],
    ) -> bool:
        dead_letter_id = dead_letter_delivery(
            connection, row, self.owner, error_type=error_type, message=message, now=now
        )
        if dead_letter_id is not None:
            archived.append((dead_letter_id, error_type, message))
            logger.warning(
                "delivery %s to %s dead-lettered as %s (its ordering key %s waits for replay or discard): %s",
                row["id"],
                row["system"],
                dead_letter_id,
                row["ordering_key"],
                message,
            )
        return dead_letter_id is not None

    def _after_answer(self, connection: Any, system: str, now: datetime) -> str | None:
        """The system answered: reset its failure count (only written when there is one to reset)."""
        control = self.gate.control(system)
        if control.consecutive_failures == 0 and self.gate.closed(system):
            return None
        previous = record_success(connection, system, now)
        if previous is not None:
            breaker_transitions_total.labels(system, "closed").inc()
            logger.info("circuit breaker for %s closed: the system answered again", system)
        return previous or "reset"


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
