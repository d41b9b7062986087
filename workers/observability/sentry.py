"""Sentry for the fleet: set up before the broker, scrubbed of personal data and secrets, tagged like dead letters.

`init_sentry` must run before a broker is created: sentry-sdk's Dramatiq integration adds its
middleware (a scope per message) in `Broker.__init__`. Our actors declare every exception as expected
(FailurePolicy decides), so that middleware reports none; `SentryFailures` reports each *dead-lettered*
failure instead, once, not every retried attempt. Its Sentry fingerprint is the dead letter's failure
fingerprint, so one Sentry issue is one `flowfleet dlq groups` group, and every event carries the
tags flow, contract, version, message_id, correlation_id and fingerprint to find it by.

Every event, transaction and breadcrumb passes `before_send` / `before_breadcrumb`, which drop the
message body the integration attaches, drop frame variables, render log messages without their
Dramatiq-message arguments, and scrub the rest (workers.observability.scrubbing), including the personal values
of the message being handled and the secrets in the settings.

sentry-sdk is imported only when a DSN is set (~10 MiB per process otherwise spent for nothing).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from workers.failures import classify
from workers.observability.logs import message_context
from workers.observability.metrics import OutcomeRecorder
from workers.observability.scrubbing import current_message_values, render_log_message, scrub, secret_values
from workers.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk._types import DataCollectionUserOptions, Event, Hint
    from sentry_sdk.transport import Transport

#: Top-level parts of an event that describe the SDK, not our data: scrubbed as text, their keys kept.
_SDK_PARTS = frozenset({"sdk", "modules", "debug_meta"})
#: Contexts the SDK fills about the machine and the trace; any other context is scrubbed by key too.
_SYSTEM_CONTEXTS = frozenset({"runtime", "os", "trace", "device", "app", "culture", "cloud_resource", "otel"})
#: Sentry tag values are limited to 200 characters.
_TAG_LENGTH = 200

#: Integrations collect no user, cookies, headers, query strings, bodies, queue payloads, SQL parameters or
#: frame variables. Source lines around each frame stay: they are our code, not data.
NOTHING_PERSONAL: DataCollectionUserOptions = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "graphql": {"document": False, "variables": False},
    "gen_ai": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}

_fate: ContextVar[str | None] = ContextVar("flowfleet_sentry_fate", default=None)


def init_sentry(settings: Settings, *, transport: Transport | None = None) -> bool:
    """Start Sentry when SENTRY_DSN is set (before any broker is created); return whether it started.

    SENTRY_ENVIRONMENT and SENTRY_RELEASE are read by sentry-sdk itself. `transport` is for tests.
    """
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    import sentry_sdk  # noqa: PLC0415  # only a process with a DSN pays for the SDK
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration  # noqa: PLC0415  # as above
    from sentry_sdk.integrations.logging import LoggingIntegration  # noqa: PLC0415  # as above

    secrets = secret_values(settings)
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[DramatiqIntegration(), LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        # What `send_default_pii=False` meant, and stricter; sentry-sdk 2.75 deprecates that flag for this.
        data_collection=NOTHING_PERSONAL,
        max_request_body_size="never",
        before_send=_event_scrubber(secrets),
        before_send_transaction=_event_scrubber(secrets),
        before_breadcrumb=_breadcrumb_scrubber(secrets),
        transport=transport,
    )
    return True


class SentryFailures(Middleware):
    """Reports each dead-lettered failure to Sentry, grouped by its dead-letter fingerprint.

    It learns a message's fate from FailurePolicy's own report (`reporting_to` wraps the policy's
    outcomes), so it must come before FailurePolicy in the middleware list: its after-hook then runs
    after the policy decided.
    """

    def reporting_to(self, outcomes: OutcomeRecorder) -> OutcomeRecorder:
        """`outcomes`, also telling this middleware what the policy decided for the message."""
        return _FateWitness(outcomes)

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        _fate.set(None)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or _fate.get() != "dead_lettered" or not sentry_active():
            return
        import sentry_sdk  # noqa: PLC0415  # imported already: sentry_active() said so

        failure = classify(exception)
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["flowfleet-dead-letter", failure.fingerprint]
            scope.set_level("error" if failure.stage == "handler" else "warning")
            scope.set_tag("fingerprint", failure.fingerprint)
            scope.set_tag("stage", failure.stage)
            scope.set_tag("dead_lettered", "yes")
            sentry_sdk.capture_exception(exception)


def sentry_active() -> bool:
    """Whether Sentry was started in this process; False without importing the SDK if nothing imported it."""
    sdk = sys.modules.get("sentry_sdk")
    return sdk is not None and bool(sdk.get_client().is_active())


class _FateWitness:
    """Passes outcomes on, remembering the last one for this thread's message."""

    def __init__(self, outcomes: OutcomeRecorder) -> None:
        self.outcomes = outcomes

    def record(self, options: Mapping[str, Any], outcome: str) -> None:
        _fate.set(outcome)
        self.outcomes.record(options, outcome)


def _event_scrubber(secrets: frozenset[str]) -> Callable[[Event, Hint], Event | None]:
    def before_send(event: Event, hint: Hint) -> Event | None:
        return cast("Event", scrub_event(cast("dict[str, Any]", event), hint, secrets))

    return before_send


def _breadcrumb_scrubber(secrets: frozenset[str]) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        return scrub_breadcrumb(crumb, hint, secrets)

    return before_breadcrumb


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """The event tagged with the current message's context, with bodies and frame variables dropped, scrubbed."""
    known = secrets | current_message_values()
    event = dict(event)
    _tag(event, hint)
    contexts = event.get("contexts")
    if isinstance(contexts, dict) and isinstance(contexts.get("dramatiq"), dict):
        contexts["dramatiq"] = {key: value for key, value in contexts["dramatiq"].items() if key != "data"}
    record = hint.get("log_record")
    if isinstance(record, logging.LogRecord) and "logentry" in event:
        text = render_log_message(record, known)
        event["logentry"] = {"message": text, "formatted": text, "params": []}
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = {key: value for key, value in request.items() if key not in ("data", "cookies")}
    _drop_frame_variables(event)
    scrubbed: dict[str, Any] = {}
    for key, value in event.items():
        if key in _SDK_PARTS:
            scrubbed[key] = scrub(value, known, by_key=False)
        elif key == "contexts" and isinstance(value, dict):
            scrubbed[key] = {
                name: scrub(context, known, by_key=name not in _SYSTEM_CONTEXTS) for name, context in value.items()
            }
        else:
            scrubbed[key] = scrub(value, known)
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], hint: Mapping[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """The breadcrumb with a log record's message rendered without bodies, then scrubbed."""
    known = secrets | current_message_values()
    crumb = dict(crumb)
    record = hint.get("log_record") if hint else None
    if isinstance(record, logging.LogRecord):
        crumb["message"] = render_log_message(record, known)
    result: dict[str, Any] = scrub(crumb, known)
    return result


def _tag(event: dict[str, Any], hint: Mapping[str, Any]) -> None:
    tags = dict(event.get("tags") or {})
    for key, value in message_context().items():
        tags.setdefault(key, str(value)[:_TAG_LENGTH])
    exc_info = hint.get("exc_info")
    if "fingerprint" not in tags and isinstance(exc_info, tuple) and isinstance(exc_info[1], BaseException):
        tags["fingerprint"] = classify(exc_info[1]).fingerprint
    if tags:
        event["tags"] = tags


def _drop_frame_variables(event: dict[str, Any]) -> None:
    for part in ("exception", "threads"):
        container = event.get(part)
        values = container.get("values") if isinstance(container, dict) else None
        for value in values if isinstance(values, list) else []:
            stacktrace = value.get("stacktrace") if isinstance(value, dict) else None
            frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
            for frame in frames if isinstance(frames, list) else []:
                if isinstance(frame, dict):
                    frame.pop("vars", None)
