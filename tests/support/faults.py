"""A dependency that fails inside the handler's transaction, for tests of what becomes of a failing *message*.

Downstream systems no longer fail a message (the outbox records their requests and the relay sends them), so
tests of retries, dead letters, replays, logs and Sentry make a flow's port fail here instead: `responder`
answers like a downstream system would, and a non-2xx answer raises in the handler, rolling the effect back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from threading import Lock
from typing import Any

from sqlalchemy import Connection

from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from workers.delivery.responses import raise_for_status
from workers.flows.flow import Flow

#: (path, payload, idempotency key, attempt for that key) -> HTTP status, as FakeDownstream's responder.
Responder = Callable[[str, Mapping[str, Any], str, int], int]


class PortFaults:
    """Fails the ports to `system` (default the ERP) by `responder`; does nothing while it is None."""

    def __init__(self, system: str = "erp") -> None:
        self.system = system
        self.responder: Responder | None = None
        #: Each answer given inside a transaction: (path, idempotency key, status).
        self.requests: list[tuple[str, str, int]] = []
        self._attempts: Counter[str] = Counter()
        self._lock = Lock()

    def wrap(self, flow: Flow) -> Flow:
        """The flow, its port to the system checked by the responder before each request is recorded."""

        def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
            ports = {name: (_Faulty(port, self) if name == self.system else port) for name, port in downstream.items()}
            return flow.apply(parsed, connection, ports)

        return replace(flow, apply=apply)

    def answer(self, path: str, payload: Mapping[str, Any], idempotency_key: str) -> int:
        with self._lock:
            self._attempts[idempotency_key] += 1
            attempt = self._attempts[idempotency_key]
        status = 200 if self.responder is None else self.responder(path, payload, idempotency_key, attempt)
        with self._lock:
            self.requests.append((path, idempotency_key, status))
        return status


class _Faulty:
    def __init__(self, port: Downstream, faults: PortFaults) -> None:
        self.port = port
        self.faults = faults

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        status = self.faults.answer(path, payload, idempotency_key)
        raise_for_status(self.faults.system, path, status, "1" if status == 429 else None)
        self.port.post(path, payload, idempotency_key=idempotency_key)
