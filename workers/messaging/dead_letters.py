"""The dead-letter message format: headers the worker adds, and the archive record read back from them.

Two kinds of dead letter reach a `<queue>.XQ`: those the worker publishes (they carry the final
error in `x-flowfleet-*` headers) and those the broker dead-letters itself, when a message exceeded
the queue's delivery limit because its worker died every time (they carry RabbitMQ's `x-death`).

A replayed copy's mark (workers.messaging.replay_headers) is kept through both, so a copy that fails again is
archived as a new record linked to the one replayed, under a key of its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dramatiq import Message
from dramatiq.errors import DecodeError

from workers.failures import Failure, fingerprint
from workers.messaging.event_identity import event_fields
from workers.messaging.ingress import DRAMATIQ_FORMAT, FORMAT_HEADER, decode_body
from workers.messaging.replay_headers import REPLAY_HEADERS, ReplayMark

PREFIX = "x-flowfleet-"


def dead_letter_id(queue_name: str, body: bytes, headers: Mapping[str, Any] | None = None) -> str:
    """Identifies a dead letter by its queue and raw body, and for a replayed copy by the replay too.

    The same message dead-lettered twice (redelivered after its dead letter's confirm was lost) is
    thereby archived once. A replayed copy (its `headers` carry a replay mark) that fails again is a
    different dead letter from the one replayed, though its bytes are the same: its key adds the
    replayed record's id and the replay action's id.
    """
    material = queue_name.encode("utf-8") + b"\0" + body
    mark = ReplayMark.from_headers(headers)
    if mark is not None:
        material += b"\0" + mark.key_material()
    return hashlib.sha256(material).hexdigest()[:40]


def dead_letter_headers(
    failure: Failure,
    *,
    dead_letter_id: str,
    event: Mapping[str, Any],
    original_headers: Mapping[str, Any],
    attempts: int,
    delivery_count: int,
    first_failed_ms: int,
    last_failed_ms: int,
) -> dict[str, Any]:
    """The original headers plus the final failure, as published with the dead letter."""
    ours: dict[str, Any] = {
        "dead-letter-id": dead_letter_id,
        "stage": failure.stage,
        "error-type": failure.error_type,
        "error-message": failure.message,
        "traceback": failure.traceback,
        "fingerprint": failure.fingerprint,
        "field-paths": json.dumps(list(failure.field_paths)),
        "attempts": attempts,
        "delivery-count": delivery_count,
        "first-failed-at": first_failed_ms,
        "last-failed-at": last_failed_ms,
        "event": json.dumps(dict(event)),
    }
    originals = {k: v for k, v in original_headers.items() if _original(k) and k != "x-death"}
    return amqp_safe({**originals, **{PREFIX + key: value for key, value in ours.items()}})


#: AMQP's long-long integer: pika cannot encode an integer beyond it.
_INT64 = (-(2**63), 2**63 - 1)


def amqp_safe(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers pika can always encode: a value it cannot (a float, a huge integer, an object) becomes text.

    A header the dead letter cannot be published with would leave the message looping until the
    broker's delivery limit, archived then with the wrong reason.
    """
    return {str(key): _amqp_value(value) for key, value in headers.items()}


def _amqp_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return amqp_safe(value)
    if isinstance(value, list | tuple):
        return [_amqp_value(item) for item in value]
    if value is None or isinstance(value, str | bytes | bool):
        return value
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    return str(value)


def archive_record(
    flow: str,
    queue: str,
    headers: Mapping[str, Any],
    body: bytes,
    delivery_limits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Everything the archive keeps about one dead letter, from the message as it sits in the XQ.

    `delivery_limits` (queue -> x-delivery-limit) tells how many deliveries a message that hit the
    limit had: the broker resets its delivery count when it dead-letters it. Never raises: a dead
    letter whose headers cannot be read is still archived, as it came.
    """
    try:
        if PREFIX + "stage" in headers:
            record = _from_worker(headers, body)
        else:
            record = _from_broker(headers, body, delivery_limits or {})
    except Exception as error:  # anything else would leave the dead letter looping in its queue
        record = _unreadable(headers, body, error)
    return _complete(flow, queue, record, read_body=True)


def unreadable_record(
    flow: str, queue: str, headers: Mapping[str, Any], body: bytes, error: Exception
) -> dict[str, Any]:
    """The record of a dead letter that could not be archived as read: raw body and headers, and why."""
    record = _unreadable(headers, body, error)
    record["error_message"] = f"the dead letter could not be archived as read ({type(error).__name__}: {error})"
    return _complete(flow, queue, record, read_body=False)


def _complete(flow: str, queue: str, record: dict[str, Any], *, read_body: bool) -> dict[str, Any]:
    raw_body: bytes = record.pop("raw_body")
    from_body = event_fields(raw_body) if read_body else {}
    event = from_body | {k: v for k, v in record.pop("event").items() if v is not None}
    business_keys = event.get("business_keys") or {}
    mark = ReplayMark.from_headers(record["headers"]) if read_body else None
    return {
        "flow": flow,
        "queue": queue,
        "contract": event.get("contract"),
        "version": event.get("version"),
        "message_id": event.get("message_id"),
        "correlation_id": event.get("correlation_id"),
        "producer": event.get("producer"),
        "dedup_key": event.get("dedup_key"),
        "business_keys": business_keys,
        "archived_at": datetime.now(UTC),
        "status": "open",
        "body": raw_body,
        "replay_of": None if mark is None else mark.dead_letter_id,
        "replay_action_id": None if mark is None else mark.action_id,
        "search_keys": search_keys(business_keys, raw_body) if read_body else [],
        **record,
    }


def search_keys(business_keys: Mapping[str, Any], body: bytes) -> list[tuple[str, str]]:
    """What `dlq list --key name=value` finds a dead letter by: its business keys, and the `*_id` and
    `sku` fields at the top of its data, so a record whose data failed validation is found too."""
    found = {(str(k)[:100], str(v)[:200]) for k, v in business_keys.items() if v is not None}
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return sorted(found)
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, dict):
        for name, value in data.items():
            if (name.endswith("_id") or name == "sku") and isinstance(value, str | int) and not isinstance(value, bool):
                found.add((name[:100], str(value)[:200]))
    return sorted(found)


def _original(header: str) -> bool:
    """A header the message was published with: not one of the failure headers, but the replay mark is kept."""
    return not header.startswith(PREFIX) or header in REPLAY_HEADERS


def _from_worker(headers: Mapping[str, Any], body: bytes) -> dict[str, Any]:
    def ours(key: str, default: Any = None) -> Any:
        return headers.get(PREFIX + key, default)

    return {
        "dead_letter_key": str(ours("dead-letter-id")),
        "stage": str(ours("stage")),
        "error_type": str(ours("error-type", "Unknown")),
        "error_message": str(ours("error-message", "")),
        "traceback": ours("traceback"),
        "fingerprint": str(ours("fingerprint", "")),
        "field_paths": _json_list(ours("field-paths", "[]")),
        "attempts": int(ours("attempts", 1)),
        "first_failed_at": _from_ms(ours("first-failed-at")),
        "last_failed_at": _from_ms(ours("last-failed-at")),
        "headers": {k: v for k, v in headers.items() if _original(k)},
        "event": _json_dict(ours("event", "{}")),
        "raw_body": body,
    }


def _from_broker(headers: Mapping[str, Any], body: bytes, delivery_limits: Mapping[str, int]) -> dict[str, Any]:
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping) else {}
    reason = str(death.get("reason", "unknown"))
    count = int(death.get("count", 1) or 1)
    limit = delivery_limits.get(str(death.get("queue")))
    # A quorum queue dead-letters a message once it was returned more than its limit allows.
    attempts = limit + 1 if reason == "delivery_limit" and limit is not None else count
    raw_body, original_headers = body, dict(headers)
    if headers.get(FORMAT_HEADER) == DRAMATIQ_FORMAT:
        try:
            message = Message.decode(body)
            raw_body = decode_body(message.kwargs)
            original_headers = dict(message.kwargs.get("headers", {}))
            attempts += int(message.options.get("attempt", 0))
        except (DecodeError, TypeError, ValueError):
            pass
    if reason == "delivery_limit":
        error_type = "DeliveryLimitExceeded"
        message_text = (
            f"the broker dead-lettered this message after its delivery limit: the worker handling it "
            f"died or lost its connection on every delivery ({death.get('queue', 'queue')})"
        )
    else:
        error_type = f"BrokerDeadLettered:{reason}"
        message_text = f"the broker dead-lettered this message (reason: {reason}, queue: {death.get('queue')})"
    when = death.get("time")
    died_at = datetime.fromisoformat(when) if isinstance(when, str) else datetime.now(UTC)
    if died_at.tzinfo is None:
        died_at = died_at.replace(tzinfo=UTC)
    key_material = f"{death.get('queue')}|{when}|{count}|".encode() + body
    return {
        "dead_letter_key": "broker-" + hashlib.sha256(key_material).hexdigest()[:40],
        "stage": "handler",
        "error_type": error_type,
        "error_message": message_text,
        "traceback": None,
        "fingerprint": fingerprint("handler", error_type, "", ()),
        "field_paths": [],
        "attempts": attempts,
        "first_failed_at": died_at,
        "last_failed_at": died_at,
        "headers": {k: v for k, v in original_headers.items() if k != "x-death"} | {"x-death": deaths},
        "event": {},
        "raw_body": raw_body,
    }


def _unreadable(headers: Mapping[str, Any], body: bytes, error: Exception) -> dict[str, Any]:
    now = datetime.now(UTC)
    material = json.dumps(headers, sort_keys=True, default=str).encode() + body
    return {
        "dead_letter_key": "unreadable-" + hashlib.sha256(material).hexdigest()[:40],
        "stage": str(headers.get(PREFIX + "stage", "handler"))[:20],
        "error_type": "UnreadableDeadLetter",
        "error_message": f"the dead letter's headers could not be read ({type(error).__name__}: {error})",
        "traceback": None,
        "fingerprint": fingerprint("handler", "UnreadableDeadLetter", "", ()),
        "field_paths": [],
        "attempts": 1,
        "first_failed_at": now,
        "last_failed_at": now,
        "headers": dict(headers),
        "event": {},
        "raw_body": body,
    }


def _from_ms(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.now(UTC)


def _json_list(value: Any) -> list[Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return []
    return list(parsed) if isinstance(parsed, list) else []


def _json_dict(value: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return {}
    return dict(parsed) if isinstance(parsed, dict) else {}
