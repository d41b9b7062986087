"""Where the demo's day is played: each phase published, applied and delivered, and the ERP's maintenance window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from workers.delivery.fake import FakeDownstream
from workers.delivery.relay import Relay
from workers.demo.day import MAINTENANCE_ORDERS, Step, maintenance_window
from workers.messaging.memory_broker import MemoryBroker
from workers.store.outbox.controls import pause, resume
from workers.store.outbox.status import PENDING
from workers.store.tables import deliveries, orders


@dataclass
class Stage:
    """The in-memory fleet the demo publishes to, and the relay that sends what its flows recorded."""

    engine: Engine
    broker: MemoryBroker
    queues: tuple[str, ...]
    exchange: str
    relay: Relay
    print_line: Any

    def run_phase(self, phase: str, steps: list[Step]) -> int:
        """Publish a phase's envelopes, let the flows apply them, then let the relay send what they recorded."""
        self.print_line(f"{phase}: publishing {len(steps)} envelopes to {self.exchange}")
        for routing_key, body, note in steps:
            self.broker.publish(self.exchange, routing_key, body, {})
            self.print_line(f"  {routing_key:<20} {note}")
        for queue in self.queues:
            self.broker.join(queue, timeout=60_000, settle_ms=200)
        sent = self.relay.drain(timeout=30, quiet=0.5)
        self.print_line(f"  relay: {sent} delivery outcomes recorded")
        return sent

    def maintenance_window(self, erp: FakeDownstream) -> dict[str, Any]:
        """The ERP paused for its upgrade: orders are still reserved and channels still hear about stock;
        once it is resumed, the backlog drains, each order's requests in order."""
        self._pause("erp", paused=True, reason="ERP upgrade 4.2")
        before = len(erp.requests)
        self.run_phase("maintenance window: the ERP is paused", maintenance_window())
        with self.engine.connect() as connection:
            reserved = connection.execute(
                select(func.count()).select_from(orders).where(orders.c.order_id.in_(MAINTENANCE_ORDERS))
            ).scalar_one()
            backlog = _erp_backlog(connection)
        during = len(erp.requests) - before
        self._pause("erp", paused=False, reason="ERP upgrade done")
        sent = self.relay.drain(timeout=30, quiet=0.5)
        exported = [key for _path, key, status in erp.requests[before:] if 200 <= status < 300]
        with self.engine.connect() as connection:
            left = _erp_backlog(connection)
        self.print_line(
            f"  resumed: {backlog} ERP deliveries waited, {sent} delivery outcomes recorded, {left} pending"
        )
        return {
            "orders_reserved": int(reserved),
            "erp_requests_while_paused": during,
            "erp_backlog_at_resume": backlog,
            "erp_exported_after_resume": exported,
            "erp_backlog_after": left,
        }

    def _pause(self, system: str, *, paused: bool, reason: str) -> None:
        with self.engine.begin() as connection:
            if paused:
                pause(connection, system, actor="demo", reason=reason, until=None, now=datetime.now(UTC))
            else:
                resume(connection, system, actor="demo", reason=reason, now=datetime.now(UTC))
        self.relay.gate.forget(system)


def _erp_backlog(connection: Connection) -> int:
    query = (
        select(func.count()).select_from(deliveries).where(deliveries.c.system == "erp", deliveries.c.status == PENDING)
    )
    return int(connection.execute(query).scalar_one())
