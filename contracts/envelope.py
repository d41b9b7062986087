"""The envelope every publisher wraps its event in, and its strict decoding from bytes."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from contracts.errors import UndecodableMessage
from contracts.types import Timestamp
from contracts.validation import describe_errors

#: Bodies above this size are rejected before parsing: no publisher needs more for one event.
MAX_BODY_BYTES = 1_048_576

Identifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]


class Envelope(BaseModel):
    """What travels on `commerce.events`: identity, contract and version, and the payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: Identifier
    contract: Identifier
    version: Annotated[int, Field(strict=True, ge=1)]
    occurred_at: Timestamp
    producer: Identifier
    correlation_id: Identifier | None = None
    data: dict[str, Any]

    def to_json(self) -> bytes:
        """Serialise the envelope as publishers send it."""
        return self.model_dump_json(exclude_none=True).encode("utf-8")


def decode_envelope(body: bytes) -> Envelope:
    """Parse bytes into an envelope, or raise UndecodableMessage saying exactly why not."""
    if len(body) > MAX_BODY_BYTES:
        raise UndecodableMessage(f"body is {len(body)} bytes, above the {MAX_BODY_BYTES}-byte limit")
    if body.startswith(b"\xef\xbb\xbf"):
        raise UndecodableMessage("body starts with a byte order mark (EF BB BF): send UTF-8 JSON without one")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UndecodableMessage(f"body is not UTF-8 (byte {error.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UndecodableMessage(f"body is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise UndecodableMessage("body is not JSON this service accepts: nested too deeply") from None
    if not isinstance(document, dict):
        raise UndecodableMessage(f"body is JSON {type(document).__name__}, not an envelope object")
    try:
        return Envelope.model_validate(document)
    except ValidationError as error:
        reason, paths = describe_errors(error)
        raise UndecodableMessage(f"not an envelope: {reason}", field_paths=paths) from None
