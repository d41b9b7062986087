"""The reference downstream adapter: JSON over HTTP POST with an Idempotency-Key, within the fleet's rate limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from handlers.errors import Throttled, TransientError
from workers.delivery.rate_limit import RateLimit
from workers.delivery.responses import raise_for_status
from workers.observability.metrics import downstream_requests_total


class HttpDownstream:
    """One downstream system at `base_url`; timeouts and connection errors are transient.

    With a `rate_limit`, each request first takes a slot of the fleet's rate for this system (or is held
    back, raising Throttled), and a 429's Retry-After pauses the whole fleet's requests to it.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout, headers={"User-Agent": "flowfleet"})
        self._rate_limit = rate_limit

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        if self._rate_limit is not None:
            try:
                self._rate_limit.acquire(path)
            except Throttled:
                downstream_requests_total.labels(self.system, "rate_limited").inc()
                raise
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
        except Exception as error:
            downstream_requests_total.labels(self.system, _status_class(response.status_code)).inc()
            if isinstance(error, Throttled) and error.retry_after and self._rate_limit is not None:
                self._rate_limit.pause(error.retry_after)
            raise
        downstream_requests_total.labels(self.system, result).inc()

    def close(self) -> None:
        self._client.close()
        if self._rate_limit is not None:
            self._rate_limit.close()


def _status_class(status: int) -> str:
    return "throttled" if status == 429 else f"{status // 100}xx"
