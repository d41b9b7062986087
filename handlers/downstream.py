"""The port every downstream system (ERP, channels, notify, payments) is reached through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Downstream(Protocol):
    """Sends one effect to a downstream system.

    The same `idempotency_key` must be sent for every retry and redelivery of the same effect,
    so the other side applies it once. Raises TransientError or PermanentError.
    """

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None: ...
