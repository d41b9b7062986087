"""The port every downstream system (ERP, channels, notify, payments) is reached through, and how paths are built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote


class Downstream(Protocol):
    """Sends one effect to a downstream system.

    The same `idempotency_key` must be sent for every retry and redelivery of the same effect,
    so the other side applies it once. Raises TransientError or PermanentError.
    """

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None: ...


def segment(value: str) -> str:
    """`value` as exactly one URL path segment: `/`, `?`, `#`, `%` and every other reserved character are
    percent-encoded, and a segment of dots only (`.`, `..`), which a URL would resolve away, too.

    An event's value therefore never decides which endpoint of a downstream system is called.
    """
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded.strip(".") == "" else encoded
