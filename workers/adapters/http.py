"""The reference downstream adapter: JSON over HTTP POST with an Idempotency-Key header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from handlers.errors import TransientError
from workers.adapters.responses import raise_for_status
from workers.metrics import downstream_requests_total


class HttpDownstream:
    """One downstream system at `base_url`; timeouts and connection errors are transient."""

    def __init__(
        self, system: str, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout, headers={"User-Agent": "flowfleet"})

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        try:
            response = self._client.post(
                self.base_url + path, json=dict(payload), headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.TimeoutException as error:
            downstream_requests_total.labels(self.system, "timeout").inc()
            raise TransientError(f"{self.system} POST {path} timed out: {type(error).__name__}") from None
        except httpx.TransportError as error:
            downstream_requests_total.labels(self.system, "unreachable").inc()
            raise TransientError(f"{self.system} POST {path} failed: {type(error).__name__}") from None
        try:
            result = raise_for_status(
                self.system, path, response.status_code, response.headers.get("Retry-After"), response.text
            )
        except Exception:
            downstream_requests_total.labels(self.system, _status_class(response.status_code)).inc()
            raise
        downstream_requests_total.labels(self.system, result).inc()

    def close(self) -> None:
        self._client.close()


def _status_class(status: int) -> str:
    return "throttled" if status == 429 else f"{status // 100}xx"
