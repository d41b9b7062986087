"""What went wrong with a message: its stage, whether it may succeed later, and its fingerprint."""

from __future__ import annotations

import hashlib
import traceback
from dataclasses import dataclass, replace
from types import TracebackType

from pydantic import ValidationError

from contracts.errors import RejectedMessage
from handlers.errors import PermanentError, Throttled, TransientError

STAGES = ("decode", "contract", "handler", "expired", "delivery")
#: Tracebacks are trimmed to their last frames: the archive needs the cause, not the whole stack.
TRACEBACK_LIMIT = 12
MAX_ERROR_MESSAGE = 2000
_APPLICATION_PACKAGES = ("contracts", "handlers", "workers")
#: Unforeseen errors that fail the same way for the same input on every attempt: a value that cannot be
#: encoded or decoded, a model that cannot be built from the data, data nested beyond the interpreter's
#: limit. Retrying them spends the budget and then blames "retry budget exhausted", as if a system were
#: down; they are dead-lettered on the first attempt instead. Every other unforeseen error stays
#: transient: those seen in practice are lost connections (SQLAlchemy's OperationalError, pika, OSError),
#: and a programming error is bounded by the retry budget, then replayed once the fix is deployed.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (UnicodeError, ValidationError, RecursionError)


class EventExpired(Exception):
    """The event is older than its flow accepts: applying it now would do more harm than good."""


@dataclass(frozen=True)
class Failure:
    """One failed attempt, described for retry decisions and the dead-letter archive."""

    stage: str
    transient: bool
    error_type: str
    message: str
    traceback: str
    fingerprint: str
    field_paths: tuple[str, ...] = ()
    retry_after: float | None = None
    #: The downstream system that throttled this attempt (a 429, or the fleet's own rate limit), if one did.
    throttled_by: str | None = None

    @property
    def throttled(self) -> bool:
        """The other side asked us to slow down: retried without spending the retry budget."""
        return self.throttled_by is not None

    def throttled_too_often(self, times: int) -> Failure:
        """The final failure of a message that was throttled more often than the fleet waits for."""
        return replace(
            self,
            transient=False,
            message=f"throttled {times} times by {self.throttled_by}; final error: {self.message}",
        )

    def exhausted(self, attempts: int) -> Failure:
        """The final failure of a message whose retry budget ran out."""
        return replace(
            self,
            transient=False,
            message=f"retry budget exhausted after {attempts} attempts; final error: {self.message}",
        )


def classify(error: BaseException) -> Failure:
    """Describe `error`. Unforeseen exceptions count as transient, the retry budget bounding their cost, except
    the deterministic ones (DETERMINISTIC_ERRORS)."""
    stage, transient, retry_after, throttled_by = "handler", True, None, None
    paths: tuple[str, ...] = ()
    message = str(error)[:MAX_ERROR_MESSAGE] or type(error).__name__
    if isinstance(error, RejectedMessage):
        stage, transient, paths = error.stage, False, error.field_paths
    elif isinstance(error, EventExpired):
        stage, transient = "expired", False
    elif isinstance(error, PermanentError):
        transient = False
    elif isinstance(error, DETERMINISTIC_ERRORS):
        transient = False
        message = f"{message[: MAX_ERROR_MESSAGE - 80]} (deterministic: it fails the same way every time, not retried)"
    elif isinstance(error, TransientError):
        retry_after = error.retry_after
        if isinstance(error, Throttled):
            throttled_by = error.system
    error_type = type(error).__name__
    return Failure(
        stage=stage,
        transient=transient,
        error_type=error_type,
        message=message,
        traceback=_trimmed_traceback(error),
        fingerprint=fingerprint(stage, error_type, _application_frame(error.__traceback__), paths),
        field_paths=tuple(paths),
        retry_after=retry_after,
        throttled_by=throttled_by,
    )


def fingerprint(stage: str, error_type: str, frame: str, field_paths: tuple[str, ...]) -> str:
    """A stable id for 'the same failure': stage, error type, first application frame, field paths.

    Line numbers and values are left out so that a deploy or a different order id does not split a group.
    """
    material = "|".join((stage, error_type, frame, ",".join(sorted(_generalise(p) for p in field_paths))))
    return hashlib.sha1(material.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


def _generalise(path: str) -> str:
    """`data.lines.3.quantity` and `data.lines.0.quantity` are the same fault."""
    return ".".join("*" if step.isdigit() else step for step in path.split("."))


def _application_frame(tb: TracebackType | None) -> str:
    """The innermost frame of our own code, as `module:function`."""
    found = ""
    for frame, _line in traceback.walk_tb(tb):
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".", maxsplit=1)[0] in _APPLICATION_PACKAGES:
            found = f"{module}:{frame.f_code.co_name}"
    return found


def _trimmed_traceback(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=-TRACEBACK_LIMIT)
    return "".join(lines)[-8000:]
