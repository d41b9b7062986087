"""Scrubs personal data and secrets out of text and nested values before logs or Sentry events leave the process.

workers.observability.masking masks what we show on purpose (the CLI). This module scrubs what we never meant to
show: free text that may embed a body, a URL with a password, a token or a model's repr, and log
records whose arguments are Dramatiq messages (whose `str()` prints the whole body). Besides patterns
(emails, phone numbers, `"name": "…"` pairs, URL credentials), it replaces values it knows: the
personal fields of the message being handled and the secrets in the settings, so that a name or a
street in an exception message is caught too, which no pattern could find.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.middleware import CurrentMessage
from pydantic import SecretStr

from workers.messaging.ingress import decode_body
from workers.observability.masking import MASK, PERSONAL_KEYS, PHONE, is_key_label
from workers.settings import Settings

#: Keys whose values are never sent anywhere: credentials, and the raw bodies a message carries.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "dsn",
        "sentry_dsn",
        "body",
        "body_b64",
        "raw_body",
        "kwargs",
    }
)
#: Keys whose whole subtree is personal (every string below them), besides workers.observability.masking's keys.
PERSONAL_SUBTREES = frozenset({"address", "ship_to", "bill_to", "billing_address", "shipping_address"})
#: Known values shorter than this are left alone: replacing "DE" or "12" everywhere would ruin the text.
MIN_KNOWN_LENGTH = 3
MAX_DEPTH = 24
#: A text is scrubbed up to this many characters and the rest is cut, with a note saying how much: a log
#: line or a Sentry event has no use for a whole body, and the cost of a pass stays bounded.
MAX_SCRUBBED_CHARS = 65_536
#: The cut backs up to a space within this many characters, so no e-mail or name is left half there;
#: without one, these last characters are masked too.
_CUT_MARGIN = 400
#: At most this many known values are looked for (the longest first): a body with a million names must
#: not make every log line cost a million searches.
MAX_KNOWN_VALUES = 1000

#: An email in free text. Unlike workers.observability.masking.EMAIL, the local part stops at `*`, `/` and `:`, so a URL
#: whose credentials were already replaced (`amqp://***@rabbit.internal`) keeps its host.
#: Like workers.observability.masking.EMAIL, it starts only where a run of its characters starts and never gives
#: its local part back: linear time on any text.
EMAIL = re.compile(
    r"(?<![^@\s\"'*<>()\[\]{},;:/\\])[^@\s\"'*<>()\[\]{},;:/\\]++@[^@\s\"'<>()\[\]{},;:/\\]+\.[A-Za-z]{2,}"
)
#: A URL's userinfo. The scheme is at most 32 characters (RFC 3986 sets no limit; none in use is longer), so a
#: long run of scheme characters is not rescanned from each of its positions.
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^\s/@\"'<>]++@")
AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=\-]{6,}")
_QUOTE = r"\\?[\"']"
_VALUE = rf"(?P<q>{_QUOTE})(?P<v>.*?)(?P=q)"
SECRET_PAIR = re.compile(
    rf"(?i)(?<![\w-])(?P<k>(?:{_QUOTE})?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|dsn)"
    rf"(?:{_QUOTE})?\s*[:=]\s*)(?:{_VALUE}|(?P<bare>[^\s,;&}}\])\"']+))"
)
PERSONAL_PAIR = re.compile(
    rf"(?i)(?<![\w-])(?P<k>(?:{_QUOTE})?(?:{'|'.join(sorted(PERSONAL_KEYS, key=len, reverse=True))})"
    rf"(?:{_QUOTE})?\s*[:=]\s*){_VALUE}"
)

_message_values: ContextVar[tuple[str, frozenset[str]] | None] = ContextVar("flowfleet_message_values", default=None)


def scrub_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with known values, URL credentials, tokens, personal `key: value` pairs, emails and phones masked.

    Linear in the text's length, and reads at most MAX_SCRUBBED_CHARS of it (the rest is cut and counted).
    """
    text, cut = _bounded(text)
    text = _replace_known(text, known)
    text = URL_CREDENTIALS.sub(r"\1***@", text)
    text = AUTH_SCHEME.sub(r"\1 ***", text)
    text = SECRET_PAIR.sub(_mask_pair, text)
    text = PERSONAL_PAIR.sub(_mask_pair, text)
    text = EMAIL.sub(MASK, text)
    return PHONE.sub(MASK, text) + cut


def _bounded(text: str) -> tuple[str, str]:
    """The part of `text` a pass reads, and the note that replaces the rest (empty when nothing is cut)."""
    if len(text) <= MAX_SCRUBBED_CHARS:
        return text, ""
    head = text[:MAX_SCRUBBED_CHARS]
    space = max(head.rfind(" ", MAX_SCRUBBED_CHARS - _CUT_MARGIN), head.rfind("\n", MAX_SCRUBBED_CHARS - _CUT_MARGIN))
    head = head[:space] if space >= 0 else head[: MAX_SCRUBBED_CHARS - _CUT_MARGIN] + MASK
    return head, f" [... {len(text) - len(head):,} more characters cut before scrubbing]"


def scrub(value: Any, known: Iterable[str] = (), *, by_key: bool = True, _depth: int = 0) -> Any:  # noqa: PLR0911  # one return per kind of value reads best
    """A JSON-like copy of `value`: personal and secret keys masked (unless `by_key` is off), every text scrubbed."""
    known = known if isinstance(known, frozenset) else frozenset(known)
    if _depth > MAX_DEPTH:
        return MASK
    if isinstance(value, Mapping):
        return _scrub_mapping(value, known, by_key=by_key, depth=_depth)
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item, known, by_key=by_key, _depth=_depth + 1) for item in value]
    if isinstance(value, str):
        return scrub_text(value, known)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Message | MessageProxy):
        return describe_message(value)
    if isinstance(value, SecretStr):
        return MASK
    return scrub_text(repr(value), known)


def _scrub_mapping(value: Mapping[Any, Any], known: frozenset[str], *, by_key: bool, depth: int) -> dict[Any, Any]:
    if by_key and is_key_label(value):  # a business key's label: readable, whatever its field is called
        return {"name": value["name"], "value": scrub(value["value"], known, by_key=by_key, _depth=depth + 1)}
    result: dict[Any, Any] = {}
    for key, item in value.items():
        name = str(key).lower()
        if by_key and item is not None and (name in PERSONAL_KEYS or name in SECRET_KEYS):
            result[key] = MASK
        elif by_key and name in PERSONAL_SUBTREES:
            result[key] = _mask_leaves(item)
        else:
            result[key] = scrub(item, known, by_key=by_key, _depth=depth + 1)
    return result


def describe_message(message: Message[Any] | MessageProxy) -> str:
    """A Dramatiq message as a log may name it: actor and id, never its arguments (the body)."""
    return f"{message.actor_name}/{message.message_id}"


def render_log_message(record: logging.LogRecord, known: Iterable[str] = ()) -> str:
    """The record's message with Dramatiq messages among its arguments named, not printed, then scrubbed."""
    args: Any = record.args
    if isinstance(args, Mapping):
        args = {key: _safe_argument(value) for key, value in args.items()}
    elif isinstance(args, tuple):
        args = tuple(_safe_argument(value) for value in args)
    try:
        text = str(record.msg) % args if args else str(record.msg)
    except (TypeError, ValueError, KeyError):
        text = str(record.msg)
    return scrub_text(text, known)


def _safe_argument(value: Any) -> Any:
    return describe_message(value) if isinstance(value, Message | MessageProxy) else value


def personal_values(body: bytes) -> frozenset[str]:
    """The personal strings in a body: every text under a personal key (`email`, `name`, `ship_to`, …)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return frozenset()
    found: set[str] = set()
    _collect(document, found, personal=False, depth=0)
    escaped = {json.dumps(value)[1:-1] for value in found}  # how they read inside a JSON text (\u00eb)
    candidates = (value for value in found | escaped if len(value.strip()) >= MIN_KNOWN_LENGTH)
    return frozenset(heapq.nlargest(MAX_KNOWN_VALUES, candidates, key=len))


def current_message_values() -> frozenset[str]:
    """The personal values of the Dramatiq message this thread is handling (none outside a message)."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return frozenset()
    cached = _message_values.get()
    if cached is not None and cached[0] == message.message_id:
        return cached[1]
    kwargs = message.kwargs if isinstance(message.kwargs, Mapping) else {}
    try:
        values = personal_values(decode_body(kwargs))
    except ValueError:  # a malformed base64 body: nothing readable to look for
        values = frozenset()
    _message_values.set((message.message_id, values))
    return values


def secret_values(settings: Settings) -> frozenset[str]:
    """The secrets in the settings: URL passwords, and the Sentry DSN whole."""
    found: set[str] = set()
    for name, value in settings:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            continue
        if name == "sentry_dsn":
            found.add(text)
        match = re.match(r"^[a-z][a-z0-9+.\-]*://[^/@\s]*:([^/@\s]+)@", text, re.IGNORECASE)
        if match:
            found.add(match.group(1))
    return frozenset(value for value in found if len(value) >= MIN_KNOWN_LENGTH)


def _collect(value: Any, found: set[str], *, personal: bool, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key).lower()
            below = personal or name in PERSONAL_KEYS or name in PERSONAL_SUBTREES
            _collect(item, found, personal=below, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found, personal=personal, depth=depth + 1)
    elif personal and isinstance(value, str):
        found.add(value)


def _mask_leaves(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _mask_leaves(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_leaves(item) for item in value]
    return MASK if isinstance(value, str) else value


def _replace_known(text: str, known: Iterable[str]) -> str:
    """Each known value in `text` masked, the longest first (so a name inside a longer address goes with it)."""
    for value in heapq.nlargest(MAX_KNOWN_VALUES, (value for value in known if value), key=len):
        if value in text:
            text = text.replace(value, MASK)
    return text


def _mask_pair(match: re.Match[str]) -> str:
    if match.group("q") is None:
        return f"{match.group('k')}{MASK}"
    quote = match.group("q")
    return f"{match.group('k')}{quote}{MASK}{quote}"
