"""The one settings object, read from FLOWFLEET_* environment variables; secrets stay SecretStr."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DOWNSTREAM_SYSTEMS = ("erp", "channels", "notify", "payments")


class ConfigurationError(Exception):
    """Start-up cannot go on: the message says which setting to fix."""


class Settings(BaseSettings):
    """Configuration of one worker process. Every field maps to `FLOWFLEET_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FLOWFLEET_", extra="ignore")

    broker_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/%2F")
    database_url: SecretStr = SecretStr("sqlite:///flowfleet.db")
    management_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    metrics_port: int | None = None
    exchange: str = "commerce.events"
    #: Prefix for every queue name, so tests and tenants can share a vhost without colliding.
    queue_prefix: str = ""

    erp_url: str | None = None
    channels_url: str | None = None
    notify_url: str | None = None
    payments_url: str | None = None
    downstream_timeout_seconds: float = 10.0
    #: Requests per second each system takes from the whole fleet (shared through FLOWFLEET_REDIS_URL;
    #: without it, from each process); 0 = no limit.
    erp_rate_limit: int = Field(default=50, ge=0)
    channels_rate_limit: int = Field(default=50, ge=0)
    notify_rate_limit: int = Field(default=50, ge=0)
    payments_rate_limit: int = Field(default=50, ge=0)

    #: How long each system's deliveries are retried from their first failure before they are dead-lettered:
    #: long enough to outlast a maintenance window.
    erp_delivery_budget_seconds: int = Field(default=24 * 3600, ge=1)
    channels_delivery_budget_seconds: int = Field(default=24 * 3600, ge=1)
    notify_delivery_budget_seconds: int = Field(default=24 * 3600, ge=1)
    payments_delivery_budget_seconds: int = Field(default=24 * 3600, ge=1)
    #: The relay's retries back off from the first to the last delay (with jitter, at least any Retry-After).
    delivery_min_backoff_ms: int = Field(default=1000, ge=1)
    delivery_max_backoff_ms: int = Field(default=300_000, ge=1)
    #: Concurrent requests per system per process, and deliveries claimed at once by each.
    relay_concurrency: int = Field(default=4, ge=1, le=64)
    relay_batch: int = Field(default=20, ge=1, le=1000)
    #: Consecutive transient failures of a system that open its breaker, and how long it stays open.
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    #: Delivered and superseded deliveries are purged after this many seconds; undelivered ones never.
    delivery_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    worker_threads: int = Field(default=8, ge=1, le=256)
    #: Apply messages that worker threads hold at once in one transaction, a savepoint each
    #: (workers.runtime.group_commit). Off by default: on the bench machine it saved about a quarter of the CPU
    #: per message but no throughput (0.93-1.0x), and each message waits for its group (bench/README.md).
    group_commit: bool = False
    #: Groups in flight at once per process with group commit on, each on its own connection. One by default:
    #: on the bench machine a second lane made groups smaller, cost more CPU and won no throughput.
    group_commit_lanes: int = Field(default=1, ge=1, le=64)
    #: `flowfleet worker` processes under one parent (`--processes`); 1 runs the worker in the command's own process.
    worker_processes: int = Field(default=1, ge=1, le=256)
    #: Unacked messages per consumer; RabbitMQ recommends 100-300 for throughput.
    prefetch: int = Field(default=100, ge=1, le=65535)
    #: A message redelivered this many times (its worker died each time) is dead-lettered by the broker.
    delivery_limit: int = Field(default=5, ge=1, le=1000)

    #: The flow's retry budget, for waits inside a flow (an event that overtook the one it depends on; the
    #: outbox carries downstream outages): up to this many attempts in all, ...
    max_attempts: int = Field(default=6, ge=1, le=50)
    #: ... the first retry after this, the later ones growing at the rate that spreads them over the window
    #: (jittered), none longer than the maximum ...
    retry_min_backoff_ms: int = Field(default=1000, ge=1)
    retry_max_backoff_ms: int = Field(default=20 * 60_000, ge=1)
    #: ... within this window from the first failure, the last try near its end: kept below RabbitMQ's
    #: 30-minute consumer timeout, because delayed retries wait unacked in worker memory.
    retry_window_seconds: int = Field(default=20 * 60, ge=1, le=25 * 60)
    #: Throttled tries (a 429, or the rate limit) spend neither the attempts nor the window, only this.
    max_throttled_retries: int = Field(default=30, ge=0, le=1000)
    #: An event parked behind a dead letter it depends on becomes a dead letter itself after this long.
    parked_limit_seconds: int = Field(default=24 * 3600, ge=1)
    #: Events older than this are dead-lettered with stage `expired` instead of applied.
    max_event_age_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    handler_time_limit_ms: int = Field(default=60_000, ge=100)

    #: How long a delivery may wait for its system before it is overdue (the backlog alert, `flowfleet reconcile`).
    erp_delivery_objective_seconds: int = Field(default=15 * 60, ge=1)
    channels_delivery_objective_seconds: int = Field(default=5 * 60, ge=1)
    notify_delivery_objective_seconds: int = Field(default=60 * 60, ge=1)
    payments_delivery_objective_seconds: int = Field(default=15 * 60, ge=1)

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    #: How long-running processes (worker, exporter) log: JSON lines for machines, or text for humans.
    log_format: Annotated[Literal["json", "text"], BeforeValidator(lambda v: str(v).lower())] = "json"
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(lambda v: str(v).upper())] = (
        "INFO"
    )

    def queue_name(self, flow: str) -> str:
        return f"{self.queue_prefix}{flow}"

    def delivery_budget_seconds(self, system: str) -> int:
        value: int = getattr(self, f"{system}_delivery_budget_seconds", 24 * 3600)
        return value

    @property
    def delivery_lease_seconds(self) -> float:
        """A claimed delivery's lease: longer than the request may take, so only a dead relay loses it."""
        return self.downstream_timeout_seconds * 1.5 + 5

    def downstream_url(self, system: str) -> str | None:
        value: str | None = getattr(self, f"{system}_url")
        return value

    def delivery_objective(self, system: str) -> timedelta:
        """How long `system`'s deliveries may stay pending before they count as overdue."""
        seconds: int = getattr(self, f"{system}_delivery_objective_seconds")
        return timedelta(seconds=seconds)


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
