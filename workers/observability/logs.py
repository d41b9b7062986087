"""Structured logs for long-running processes: one JSON object per line, tagged with the message being handled.

Each line has timestamp, level, logger and message, and, while a worker thread handles a message,
its flow, contract, version, message_id, correlation_id and dedup key, read from the current
Dramatiq message (CurrentMessage) that the pipeline fills. Bodies are never printed: a Dramatiq
message among a record's arguments is named by actor and id (its `str()` would print the body), and
every line is scrubbed (workers.observability.scrubbing) of personal data and secrets. `FLOWFLEET_LOG_FORMAT=text`
gives the same lines as plain text for humans; the CLI's short commands do not use this module.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware import CurrentMessage

from workers.observability.scrubbing import current_message_values, render_log_message, scrub, scrub_text

#: What a line says about the message being handled, in this order.
CONTEXT_FIELDS = ("flow", "contract", "version", "message_id", "correlation_id", "dedup_key")
#: Libraries that log every request or frame at INFO.
QUIET_LOGGERS = ("pika", "httpx", "httpcore")
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: Extras our own code passes that the context already covers.
_CONTEXT_EXTRAS = frozenset({"event", "flow"})

logger = logging.getLogger("flowfleet.messages")
#: The line every message handled without an error writes: a fixed text and a number, nothing to scrub in it.
HANDLED = "handled in %.1f ms"
_started: ContextVar[float | None] = ContextVar("flowfleet_message_started", default=None)


def message_context(record: logging.LogRecord | None = None) -> dict[str, Any]:
    """Flow, contract, version, message_id, correlation_id and dedup key: those known, from the current message.

    A record's own `event` and `flow` extras (code outside a worker thread may pass them) fill the gaps.
    """
    found: dict[str, Any] = {}
    message = CurrentMessage.get_current_message()
    sources: list[Mapping[str, Any]] = []
    if message is not None:
        options = message.options
        found["flow"] = options.get("flow") or message.actor_name
        event = options.get("event")
        if isinstance(event, Mapping):
            sources.append(event)
    if record is not None:
        event = getattr(record, "event", None)
        if isinstance(event, Mapping):
            sources.append(event)
        flow = getattr(record, "flow", None)
        if flow and "flow" not in found:
            found["flow"] = flow
    for source in sources:
        for field in CONTEXT_FIELDS:
            if found.get(field) in (None, "") and source.get(field) not in (None, ""):
                found[field] = source[field]
    return {field: found[field] for field in CONTEXT_FIELDS if found.get(field) not in (None, "")}


class _ScrubbingFormatter(logging.Formatter):
    """Shared by both formats: the message, context, extras and exception, each scrubbed."""

    def __init__(self, secrets: frozenset[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def parts(self, record: logging.LogRecord) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
        if record.msg is HANDLED and record.name == logger.name and not record.exc_info and not record.stack_info:
            # The per-message line: its text is ours and its extra a float; only the context needs scrubbing.
            message = HANDLED % record.args if record.args else HANDLED
            extras = {"duration_ms": getattr(record, "duration_ms", None)}
            return message, scrub(message_context(record), self.secrets), extras, None
        known = self.secrets | current_message_values() if _may_carry_payload(record) else self.secrets
        message = render_log_message(record, known)
        context = scrub(message_context(record), known)
        extras = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and key not in _CONTEXT_EXTRAS and not key.startswith("_")
        }
        exception = None
        if record.exc_info:
            exception = scrub_text(self.formatException(record.exc_info), known)
        elif record.exc_text:
            exception = scrub_text(record.exc_text, known)
        if record.stack_info:
            stack = scrub_text(self.formatStack(record.stack_info), known)
            exception = f"{exception}\n{stack}" if exception else stack
        return message, context, scrub(extras, known), exception


def _may_carry_payload(record: logging.LogRecord) -> bool:
    """Whether a line could hold a value from the message's body, so the body's personal values are looked for.

    Finding them parses the body: worth it for warnings, errors and lines with text arguments, not
    for the INFO line every handled message writes (numbers and envelope ids, still pattern-scrubbed).
    """
    if record.levelno >= logging.WARNING or record.exc_info or record.exc_text or record.stack_info:
        return True
    args = record.args.values() if isinstance(record.args, Mapping) else record.args or ()
    return any(not isinstance(arg, int | float) for arg in args)


class JsonFormatter(_ScrubbingFormatter):
    """One JSON object per line: timestamp, level, logger, message, the message context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        message, context, extras, exception = self.parts(record)
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **context,
        }
        for key, value in extras.items():
            entry.setdefault(key, value)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(_ScrubbingFormatter):
    """`2026-11-22 10:00:00,123 INFO flowfleet.messages handled in 3.1 ms [flow=orders message_id=…]`."""

    def format(self, record: logging.LogRecord) -> str:
        message, context, _extras, exception = self.parts(record)
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        if context:
            line += " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]"
        return f"{line}\n{exception}" if exception else line


class FleetLogHandler(logging.StreamHandler[IO[str]]):
    """The handler configure_logging installs on the root logger (and replaces when called again)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except RecursionError:  # the stdlib lets this one through; a log line must never kill a worker thread
            self.handleError(record)


def configure_logging(
    *,
    json: bool = True,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
    secrets: frozenset[str] = frozenset(),
) -> logging.Handler:
    """Send every log record to `stream` (stderr) as JSON lines, or as text; return the handler installed.

    `secrets` are values (passwords, the Sentry DSN) replaced wherever they appear: see
    workers.observability.scrubbing.secret_values.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, FleetLogHandler):
            root.removeHandler(handler)
    handler = FleetLogHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if json else TextFormatter(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


class MessageLog(Middleware):
    """One INFO line per message handled without an error, with its duration (FailurePolicy logs the failures)."""

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        _started.set(time.perf_counter())

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = _started.get()
        if exception is not None or started is None:
            return
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        logger.info(HANDLED, elapsed_ms, extra={"duration_ms": elapsed_ms})
