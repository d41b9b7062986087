"""An in-process downstream system for the embedded demo: idempotent by key, with scripted answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from workers.delivery.responses import raise_for_status

#: Decides the HTTP status for one request: (path, payload, idempotency key, attempt for that key).
Responder = Callable[[str, Mapping[str, Any], str, int], int]


@dataclass
class FakeDownstream:
    """Answers like a real idempotent HTTP API would, without the network."""

    system: str
    responder: Responder = lambda _path, _payload, _key, _attempt: 200
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    _attempts: dict[str, int] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        with self._lock:
            attempt = self._attempts[idempotency_key] = self._attempts.get(idempotency_key, 0) + 1
            status = self.responder(path, payload, idempotency_key, attempt)
            if 200 <= status < 300 and idempotency_key in self.applied:
                status = 409
            self.requests.append((path, idempotency_key, status))
            if 200 <= status < 300:
                self.applied[idempotency_key] = dict(payload)
        raise_for_status(self.system, path, status, "1" if status == 429 else None)
