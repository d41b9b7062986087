"""How a plain envelope on a flow queue becomes actor work: a strict decoding step in the consumer.

Publishers send the plain envelope. The consumer does not parse it: it wraps the raw bytes and the
AMQP headers into a Dramatiq message for the flow's actor, and the actor decodes and validates them,
so a bad body fails inside the normal failure path (recorded, dead-lettered) instead of in the
consumer thread. Messages flowfleet re-enqueues itself (delayed retries) are Dramatiq messages and
are marked with FORMAT_HEADER; only those are decoded as Dramatiq's own format.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dramatiq import Message
from dramatiq.common import dq_name
from dramatiq.errors import DecodeError

#: Marks a body that is a Dramatiq message flowfleet enqueued itself (a delayed retry).
FORMAT_HEADER = "x-flowfleet-format"
DRAMATIQ_FORMAT = "dramatiq"
#: Set by quorum queues on redelivery: how many times the broker handed this message out before.
DELIVERY_COUNT_HEADER = "x-delivery-count"
#: The longest delay flowfleet gives a retry (the retry window's upper bound, workers.settings).
MAX_RETRY_DELAY_MS = 25 * 60 * 1000
#: How far ahead of this host's clock a due retry's eta may be, for clocks out of step.
CLOCK_SKEW_MS = 60_000

#: Dramatiq ids for deliveries: unique per process start and process, a counter after that, as a
#: `uuid4()` per delivery cost ~6% of a no-op message. The envelope's own message_id is the identity.
_ID_PREFIX = f"{os.urandom(6).hex()}-{os.getpid()}-"
_delivery_numbers = itertools.count(1)


def delivery_id() -> str:
    """A Dramatiq message id no other delivery of any process has (itertools.count is atomic under the GIL)."""
    return f"{_ID_PREFIX}{next(_delivery_numbers)}"


def message_from_delivery(
    queue_name: str, actor_name: str, headers: Mapping[str, Any] | None, body: bytes
) -> Message[Any]:
    """Turn one AMQP delivery into the Dramatiq message a worker thread will run. Never raises."""
    safe_headers = json_safe_headers(headers or {})
    count = safe_headers.get(DELIVERY_COUNT_HEADER, 0)
    delivery_count = count if isinstance(count, int) else 0
    if safe_headers.get(FORMAT_HEADER) == DRAMATIQ_FORMAT:
        message = _own_message(queue_name, actor_name, body)
        if message is not None:
            message.options["delivery_count"] = delivery_count
            return message
    return Message(
        # The queue it came from (a flow queue or its delay queue): the worker settles it there.
        queue_name=queue_name,
        actor_name=actor_name,
        args=(),
        kwargs={**encode_body(body), "headers": safe_headers},
        options={"delivery_count": delivery_count},
        message_id=delivery_id(),
        message_timestamp=int(time.time() * 1000),
    )


def _own_message(queue_name: str, actor_name: str, body: bytes) -> Message[Any] | None:
    """A retry flowfleet enqueued, if the body is one in every field the worker relies on.

    A marked body with another queue, another actor or wrong types would otherwise crash the
    worker thread that settles it; such a body is wrapped like any other unknown bytes instead.
    """
    try:
        message = Message.decode(body)
    except DecodeError:
        return None
    eta = message.options.get("eta", 0)
    fits = (
        # The queue it was delivered from: a copy naming another queue would be settled on a channel
        # that never delivered it, and stay unacked.
        message.queue_name == queue_name
        and message.actor_name == actor_name
        and isinstance(message.message_id, str)
        and isinstance(message.kwargs, dict)
        and isinstance(message.options, dict)
        and all(isinstance(message.options.get(key, 0), int) for key in ("eta", "attempt", "first_failed_at"))
        and not message.args
        and _plausible_eta(eta, delayed=queue_name == dq_name(queue_name))
    )
    return message if fits else None


def _plausible_eta(eta: Any, *, delayed: bool) -> bool:
    """An eta flowfleet could have set: a worker holds the message unacked until then, so a forged
    one far ahead would hold a prefetch slot until RabbitMQ's consumer timeout."""
    if not isinstance(eta, int) or isinstance(eta, bool):
        return False
    horizon = MAX_RETRY_DELAY_MS if delayed else CLOCK_SKEW_MS
    return eta <= int(time.time() * 1000) + horizon


def encode_body(body: bytes) -> dict[str, str]:
    """The raw body as a JSON-safe value: text when it is UTF-8, base64 otherwise. Loses nothing."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_b64": base64.b64encode(body).decode("ascii")}


def decode_body(kwargs: Mapping[str, Any]) -> bytes:
    """The raw body back from `encode_body`'s form."""
    if "body_b64" in kwargs:
        return base64.b64decode(kwargs["body_b64"])
    return str(kwargs.get("body", "")).encode("utf-8")


def json_safe_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """AMQP headers (which may hold bytes, dates, decimals, nested tables) as plain JSON values."""
    return {str(key): _json_safe(value) for key, value in headers.items()}


def _json_safe(value: Any) -> Any:  # noqa: PLR0911  # one return per AMQP field type reads best
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return json_safe_headers(value)
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return repr(value)
