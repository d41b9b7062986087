"""The reference downstream adapter: JSON over HTTP POST with an Idempotency-Key, within the fleet's rate limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from handlers.errors import PermanentError, Throttled, TransientError
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
        request = self._request(path, payload, idempotency_key)  # one that can never be sent takes no slot
        if self._rate_limit is not None:
            try:
                self._rate_limit.acquire(path)
            except Throttled:
                downstream_requests_total.labels(self.system, "rate_limited").inc()
                raise
        try:
            response = self._client.send(request)
        except httpx.LocalProtocolError as error:  # the client refused what it was given: sending again cannot help
            downstream_requests_total.labels(self.system, "unsendable").inc()
            raise PermanentError(f"{self.system} POST {_shown(path)} cannot be sent: {error}") from None
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

    def _request(self, path: str, payload: Mapping[str, Any], idempotency_key: str) -> httpx.Request:
        """The request, or a PermanentError naming the part that can never be sent (a deterministic failure)."""
        where = f"{self.system} POST {_shown(path)} cannot be sent"
        try:
            url = httpx.URL(self.base_url + path)
        except httpx.InvalidURL as error:
            raise PermanentError(f"{where}: its path is not a valid URL path ({error})") from None
        try:
            return self._client.build_request(
                "POST", url, json=dict(payload), headers={"Idempotency-Key": header_value(idempotency_key)}
            )
        except (TypeError, ValueError) as error:
            raise PermanentError(
                f"{where}: its JSON body cannot be encoded ({type(error).__name__}: {error})"
            ) from None

    def close(self) -> None:
        self._client.close()
        if self._rate_limit is not None:
            self._rate_limit.close()


def header_value(key: str) -> str:
    """The Idempotency-Key header for `key`: always visible ASCII, the same for the same key, one key per value.

    A key of printable ASCII (U+0020 to U+007E) that neither starts with `~` nor ends in a space, which every
    key built from the contracts' identifiers is, is sent as it is: the keys sent before this encoding existed
    do not change. Any other key is sent as `~` followed by its percent-encoded UTF-8 (RFC 3986, unreserved
    characters kept), so a non-ASCII character or a CR/LF can never break or forge a header.
    """
    if key and key.isascii() and key.isprintable() and not key.startswith("~") and not key.endswith(" "):
        return key
    return "~" + quote(key, safe="")


def _shown(path: str) -> str:
    """A path as an error message may quote it: control and non-ASCII characters escaped."""
    return ascii(path)[1:-1]


def _status_class(status: int) -> str:
    return "throttled" if status == 429 else f"{status // 100}xx"
