"""Dramatiq middleware that decides each failure's fate: retry later, or dead-letter with the final error.

It replaces Dramatiq's Retries middleware, closing its traps: a failed re-enqueue or dead-letter
publish leaves the message unacked for redelivery instead of acking it; the dead letter carries the
final error, not the previous attempt's; decode, contract, expired and permanent failures are never
retried; and the retry budget stays inside RabbitMQ's consumer timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from dramatiq import Broker, Message, Middleware
from dramatiq.broker import MessageProxy

from workers.dead_letters import dead_letter_headers
from workers.failures import Failure, classify
from workers.ingress import decode_body
from workers.retrying import RetryBudget

logger = logging.getLogger("flowfleet.failures")


class DeadLetterSink(Protocol):
    """A broker that can publish a dead letter for a queue, confirmed."""

    def dead_letter(self, queue_name: str, body: bytes, headers: dict[str, Any]) -> None: ...

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message: ...


class Outcomes(Protocol):
    """Where outcomes are counted (metrics); the policy reports retries and dead letters."""

    def record(self, message: MessageProxy, outcome: str) -> None: ...


def hold_for_redelivery(message: MessageProxy) -> None:
    """Ask the consumer to hand the message back to the broker instead of acking it."""
    message.options["flowfleet_requeue"] = True


class FailurePolicy(Middleware):  # type: ignore[misc]  # Dramatiq's Middleware is untyped
    """Retries transient failures within the flow's budget; dead-letters everything else, confirmed."""

    def __init__(self, budget: RetryBudget, outcomes: Outcomes) -> None:
        self.budget = budget
        self.outcomes = outcomes

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None:
            return
        failure = classify(exception)
        now_ms = int(time.time() * 1000)
        attempt = int(message.options.get("attempt", 0)) + 1
        first_failed_ms = int(message.options.get("first_failed_at", now_ms))
        if failure.transient:
            delay = self.budget.next_delay_ms(
                attempt=attempt, first_failed_ms=first_failed_ms, now_ms=now_ms, retry_after_s=failure.retry_after
            )
            if delay is not None:
                self._retry(broker, message, failure, attempt, first_failed_ms, delay)
                return
            failure = failure.exhausted(attempt)
        self._dead_letter(broker, message, failure, attempt, first_failed_ms, now_ms)

    def _retry(
        self, broker: Broker, message: MessageProxy, failure: Failure, attempt: int, first_failed_ms: int, delay: int
    ) -> None:
        options = {
            "attempt": attempt,
            "first_failed_at": first_failed_ms,
            "last_error": f"{failure.error_type}: {failure.message}"[:500],
        }
        retry = message.copy(options=options)
        retry.options.pop("flowfleet_requeue", None)
        try:
            broker.enqueue(retry, delay=delay)
        except Exception:
            logger.exception("could not enqueue a retry; leaving the message for redelivery")
            hold_for_redelivery(message)
            return
        logger.info(
            "retrying in %d ms after attempt %d: %s",
            delay,
            attempt,
            failure.error_type,
            extra={"event": message.options.get("event", {})},
        )
        self.outcomes.record(message, "retried")

    def _dead_letter(
        self,
        broker: Broker,
        message: MessageProxy,
        failure: Failure,
        attempt: int,
        first_failed_ms: int,
        now_ms: int,
    ) -> None:
        headers = dead_letter_headers(
            failure,
            event=message.options.get("event", {}),
            original_headers=message.kwargs.get("headers", {}),
            attempts=attempt,
            delivery_count=int(message.options.get("delivery_count", 0) or 0),
            first_failed_ms=first_failed_ms,
            last_failed_ms=now_ms,
        )
        try:
            broker.dead_letter(message.queue_name, decode_body(message.kwargs), headers)
        except Exception:
            logger.exception("could not publish a dead letter; leaving the message for redelivery")
            hold_for_redelivery(message)
            return
        logger.warning(
            "dead-lettered at stage %s: %s",
            failure.stage,
            failure.error_type,
            extra={"event": message.options.get("event", {})},
        )
        self.outcomes.record(message, "dead_lettered")
