"""The composition root: settings in, a broker with actors, an engine, downstream adapters and the relay out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq import Broker, Middleware
from dramatiq.middleware import CurrentMessage, ShutdownNotifications, TimeLimit
from sqlalchemy import Engine

from contracts.published import REGISTRY
from handlers.downstream import Downstream
from workers.delivery.http import HttpDownstream
from workers.delivery.rate_limit import per_second, rate_limits
from workers.delivery.relay import Relay, RelayOptions
from workers.delivery.settle import RetryPolicy
from workers.flows import FLOWS
from workers.flows.flow import Flow
from workers.messaging.broker_base import BrokerBase
from workers.messaging.topology import DEAD_LETTER_SUFFIX, Topology
from workers.observability.logs import MessageLog
from workers.observability.metrics import Outcomes
from workers.observability.sentry import SentryFailures
from workers.runtime.failure_policy import FailurePolicy
from workers.runtime.group_commit import GroupCommitter
from workers.runtime.pipeline import FlowPipeline
from workers.runtime.retrying import RetryBudget
from workers.settings import ConfigurationError, Settings
from workers.store.outbox.wakeup import DeliveriesRecorded


@dataclass
class Fleet:
    """Everything one process runs the flows with. `downstream` is what the relay sends deliveries to."""

    settings: Settings
    broker: Broker
    engine: Engine
    downstream: Mapping[str, Downstream]
    outcomes: Outcomes
    flows: tuple[Flow, ...] = field(default=FLOWS)
    #: Nudged after each commit that recorded deliveries, so this process's relay sends them at once.
    wakeup: DeliveriesRecorded = field(default_factory=DeliveriesRecorded)

    def dead_letter_queues(self) -> dict[str, str]:
        """Each flow's dead-letter queue, mapped to the flow's name."""
        return {self.settings.queue_name(f.name) + DEAD_LETTER_SUFFIX: f.name for f in self.flows}


def topology(settings: Settings, flows: tuple[Flow, ...] = FLOWS) -> Topology:
    routes = {
        settings.queue_name(flow.name): tuple(contract.name for contract in REGISTRY.for_flow(flow.name))
        for flow in flows
    }
    return Topology(exchange=settings.exchange, routes=routes, delivery_limit=settings.delivery_limit)


def middleware(settings: Settings, outcomes: Outcomes) -> list[Middleware]:
    """Dramatiq's Retries, AgeLimit, Callbacks and Pipelines are left out on purpose: FailurePolicy decides."""
    budget = RetryBudget(
        max_attempts=settings.max_attempts,
        min_backoff_ms=settings.retry_min_backoff_ms,
        max_backoff_ms=settings.retry_max_backoff_ms,
        window_ms=settings.retry_window_seconds * 1000,
        max_throttled_retries=settings.max_throttled_retries,
    )
    sentry = SentryFailures()
    return [
        TimeLimit(time_limit=settings.handler_time_limit_ms),
        ShutdownNotifications(),
        CurrentMessage(),
        # Both before FailurePolicy: their after-hooks run after it decided, with the message still current.
        MessageLog(),
        sentry,
        FailurePolicy(budget, sentry.reporting_to(outcomes)),
    ]


def http_downstream(settings: Settings, flows: tuple[Flow, ...] = FLOWS) -> dict[str, HttpDownstream]:
    """One HTTP adapter per system the flows use; an unset URL stops start-up with a clear message.

    The adapters share one rate-limit store (Redis with FLOWFLEET_REDIS_URL); closing any adapter closes it.
    """
    systems = sorted({system for flow in flows for system in flow.systems})
    missing = [s for s in systems if not settings.downstream_url(s)]
    if missing:
        names = ", ".join(f"FLOWFLEET_{s.upper()}_URL" for s in missing)
        raise ConfigurationError(f"set {names}: the flows {', '.join(f.name for f in flows)} send effects there")
    if not systems:
        return {}
    limits = rate_limits(settings)
    return {
        system: HttpDownstream(
            system,
            settings.downstream_url(system) or "",
            timeout=settings.downstream_timeout_seconds,
            rate_limit=limits.for_system(system, per_second(settings, system)),
        )
        for system in systems
    }


def publisher_of(fleet: Fleet) -> Callable[[str, bytes, dict[str, Any]], None]:
    """How a released parked event is published again: to the exchange, as its producer sent it."""
    broker = fleet.broker
    assert isinstance(broker, BrokerBase), "the fleet's brokers publish raw bytes"

    def publish(routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        broker.publish(fleet.settings.exchange, routing_key, body, headers)

    return publish


def register_actors(fleet: Fleet) -> None:
    """Declare one actor per flow on the fleet's broker, each consuming its flow's queue.

    With group commit on (FLOWFLEET_GROUP_COMMIT), the actors share one committer: messages that worker
    threads apply at the same time commit together, at most one per thread in a group, with up to
    FLOWFLEET_GROUP_COMMIT_LANES groups in flight.
    """
    settings = fleet.settings
    committer = (
        GroupCommitter(fleet.engine, max_group=settings.worker_threads, lanes=settings.group_commit_lanes)
        if settings.group_commit
        else None
    )
    for flow in fleet.flows:
        pipeline = FlowPipeline(
            flow,
            registry=REGISTRY,
            engine=fleet.engine,
            outcomes=fleet.outcomes,
            max_event_age=timedelta(seconds=fleet.settings.max_event_age_seconds),
            deliveries_recorded=fleet.wakeup.notify,
            publish_again=publisher_of(fleet),
            committer=committer,
        )
        dramatiq.Actor(
            pipeline,
            broker=fleet.broker,
            actor_name=flow.name,
            queue_name=fleet.settings.queue_name(flow.name),
            priority=0,
            # Every exception is expected: FailurePolicy records it, so Dramatiq need not log a traceback.
            options={"throws": (Exception,)},
        )


def relay(
    settings: Settings, engine: Engine, targets: Mapping[str, Downstream], wakeup: DeliveriesRecorded | None = None
) -> Relay:
    """The delivery relay for `targets`, with the settings' budgets, backoff, breaker and retention."""
    retry = RetryPolicy(
        budgets={s: timedelta(seconds=settings.delivery_budget_seconds(s)) for s in targets},
        min_backoff_ms=settings.delivery_min_backoff_ms,
        max_backoff_ms=settings.delivery_max_backoff_ms,
        breaker_threshold=settings.breaker_threshold,
    )
    options = RelayOptions(
        concurrency=settings.relay_concurrency,
        batch=settings.relay_batch,
        lease=timedelta(seconds=settings.delivery_lease_seconds),
        breaker_cooldown=timedelta(seconds=settings.breaker_cooldown_seconds),
        retention=timedelta(seconds=settings.delivery_retention_seconds),
    )
    return Relay(engine, targets, retry=retry, options=options, wakeup=wakeup)
