"""What a dead letter's body says about its event: the envelope's identity, and its keys when it is valid."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from contracts.published import REGISTRY


def event_fields(body: bytes) -> dict[str, Any]:
    """What can be learned from the body itself: envelope identity and, if valid, the keys."""
    try:
        envelope = decode_envelope(body)
    except RejectedMessage:
        return readable_identity(body)
    fields: dict[str, Any] = {
        "contract": envelope.contract,
        "version": envelope.version,
        "message_id": envelope.message_id,
        "correlation_id": envelope.correlation_id,
        "producer": envelope.producer,
    }
    try:
        contract = REGISTRY.get(envelope.contract)
    except RejectedMessage:
        return fields
    try:
        event = contract.parse(envelope.version, envelope.data)
    except RejectedMessage:
        return fields | {"dedup_key": lenient_dedup_key(contract.dedup_key, envelope.data)}
    return fields | {"dedup_key": contract.dedup_key(event), "business_keys": contract.business_keys(event)}


def lenient_dedup_key(dedup_key: Any, data: dict[str, Any]) -> str | None:
    """The dedup key of data that failed validation elsewhere (a negative quantity), when the fields the key
    is made of are there as plain text or integers: a corrected resend has that key, and supersedes it."""
    plain = {
        name: value
        for name, value in data.items()
        if isinstance(name, str)
        and (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)))
    }
    try:
        key = dedup_key(SimpleNamespace(**plain))
    except AttributeError:  # a key field is missing or not plain: no key
        return None
    return key if isinstance(key, str) and 0 < len(key) <= _MAX_IDENTIFIER else None


#: Bodies above this are not parsed for their identity: the drain must not stall on a huge body.
MAX_IDENTITY_BODY_BYTES = 8 * 1_048_576
_IDENTITY_TEXT_FIELDS = ("message_id", "contract", "producer", "correlation_id")
_MAX_IDENTIFIER = 200  # contracts.envelope.Identifier's limit


def readable_identity(body: bytes) -> dict[str, Any]:
    """The envelope fields of a body that is not a valid envelope, each one that can be read on its own.

    A body that failed `decode` for one field (`"version": "2"`, an `occurred_at` without an offset, a
    byte order mark) still names its producer and message: on-call needs them to know whom to call.
    A field that is missing or not what the envelope says it is stays out (null in the record).
    """
    if len(body) > MAX_IDENTITY_BODY_BYTES:
        return {}
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    fields: dict[str, Any] = {
        name: value
        for name in _IDENTITY_TEXT_FIELDS
        if isinstance(value := document.get(name), str) and 0 < len(value) <= _MAX_IDENTIFIER
    }
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= 2**31:
        fields["version"] = version
    return fields
