"""Dramatiq middleware that decides each failure's fate: retry later, or dead-letter with the final error.

It replaces Dramatiq's Retries middleware, closing its traps: a failed re-enqueue or dead-letter
publish leaves the message unacked for redelivery instead of acking it; the dead letter carries the
final error, not the previous attempt's; decode, contract, expired and permanent failures are never
retried; and the retry budget stays inside RabbitMQ's consumer timeout. A throttled failure (the
downstream asked us to slow down) is retried without spending the budget, up to its own cap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from workers.failures import Failure, classify
from workers.messaging.broker_base import BrokerBase
from workers.messaging.dead_letters import dead_letter_headers, dead_letter_id
from workers.messaging.ingress import decode_body
from workers.observability.metrics import OutcomeRecorder
from workers.runtime.retrying import RetryBudget

logger = logging.getLogger("flowfleet.failures")


@dataclass(frozen=True)
class Attempt:
    """Which attempt just failed, and when the message first and last failed (epoch ms).

    `number` counts the tries the retry budget spends; `throttles` the throttled ones, which it does not,
    and `throttled_ms` the delays they were given, which the budget's window leaves out.
    """

    number: int
    first_failed_ms: int
    now_ms: int
    throttles: int = 0
    throttled_ms: int = 0

    @property
    def tries(self) -> int:
        """Every failed try, throttled or not: what the dead letter reports as its attempts."""
        return self.number + self.throttles


def _whole_number(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def hold_for_redelivery(message: MessageProxy) -> None:
    """Ask the consumer to hand the message back to the broker instead of acking it."""
    message.options["flowfleet_requeue"] = True


class FailurePolicy(Middleware):
    """Retries transient failures within the flow's budget; dead-letters everything else, confirmed."""

    def __init__(self, budget: RetryBudget, outcomes: OutcomeRecorder) -> None:
        self.budget = budget
        self.outcomes = outcomes

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        try:
            self._decide(broker, message, exception)
        except Exception:
            # Dramatiq would log this and ack the message: hand it back to the broker instead.
            logger.exception("failure policy could not decide; leaving the message for redelivery")
            hold_for_redelivery(message)

    def _decide(self, broker: Broker, message: MessageProxy, exception: BaseException) -> None:
        failure = classify(exception)
        now_ms = int(time.time() * 1000)
        options = message.options
        throttled = failure.throttled
        attempt = Attempt(
            number=_whole_number(options.get("attempt"), 0) + (0 if throttled else 1),
            first_failed_ms=_whole_number(options.get("first_failed_at"), now_ms),
            now_ms=now_ms,
            throttles=_whole_number(options.get("throttled"), 0) + (1 if throttled else 0),
            throttled_ms=_whole_number(options.get("throttled_ms"), 0),
        )
        if throttled:
            delay = self.budget.next_throttled_delay_ms(throttles=attempt.throttles, retry_after_s=failure.retry_after)
            if delay is not None:
                attempt = replace(attempt, throttled_ms=attempt.throttled_ms + delay)
                self._retry(broker, message, failure, attempt, delay)
                return
            failure = failure.throttled_too_often(attempt.throttles)
        elif failure.transient:
            delay = self.budget.next_delay_ms(
                attempt=attempt.number,
                # Time spent waiting out throttling is not the message's fault: the window leaves it out.
                first_failed_ms=attempt.first_failed_ms + attempt.throttled_ms,
                now_ms=now_ms,
                retry_after_s=failure.retry_after,
            )
            if delay is not None:
                self._retry(broker, message, failure, attempt, delay)
                return
            failure = failure.exhausted(attempt.number)
        self._dead_letter(broker, message, failure, attempt)

    def _retry(self, broker: Broker, message: MessageProxy, failure: Failure, attempt: Attempt, delay: int) -> None:
        options = {
            "attempt": attempt.number,
            "first_failed_at": attempt.first_failed_ms,
            "last_error": f"{failure.error_type}: {failure.message}"[:500],
            "throttled": attempt.throttles,
            "throttled_ms": attempt.throttled_ms,
        }
        try:
            broker.enqueue(message.copy(options=options), delay=delay)
        except Exception:
            logger.exception("could not enqueue a retry; leaving the message for redelivery")
            hold_for_redelivery(message)
            return
        if failure.throttled:
            logger.info(
                "retrying in %d ms after being throttled %d times by %s",
                delay,
                attempt.throttles,
                failure.throttled_by,
                extra={"event": message.options.get("event", {})},
            )
        else:
            logger.info(
                "retrying in %d ms after attempt %d: %s",
                delay,
                attempt.number,
                failure.error_type,
                extra={"event": message.options.get("event", {})},
            )
        self.outcomes.record(message.options, "retried")

    def _dead_letter(self, broker: Broker, message: MessageProxy, failure: Failure, attempt: Attempt) -> None:
        body = decode_body(message.kwargs)
        original_headers = message.kwargs.get("headers", {})
        headers = dead_letter_headers(
            failure,
            # A replayed copy's mark (in its original headers) makes its dead letter a new record.
            dead_letter_id=dead_letter_id(message.queue_name, body, original_headers),
            event=message.options.get("event", {}),
            original_headers=original_headers,
            attempts=attempt.tries,
            delivery_count=_whole_number(message.options.get("delivery_count"), 0),
            first_failed_ms=attempt.first_failed_ms,
            last_failed_ms=attempt.now_ms,
        )
        assert isinstance(broker, BrokerBase), "FailurePolicy runs on the fleet's brokers"
        try:
            broker.dead_letter(message.queue_name, body, headers)
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
        self.outcomes.record(message.options, "dead_lettered")
