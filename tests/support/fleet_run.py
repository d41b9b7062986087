"""What worker tests drive: the started in-memory fleet (publish, settle, read what it left) and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq import Worker
from sqlalchemy import Engine, select

from workers.deadletters.drain import drain_memory
from workers.delivery.fake import FakeDownstream
from workers.delivery.relay import Relay
from workers.fleet import Fleet
from workers.messaging.memory_broker import MemoryBroker
from workers.observability.metrics import Outcomes
from workers.settings import Settings
from workers.store.archive.records import DeadLetterFilter, get_dead_letter, list_dead_letters
from workers.store.tables import order_lines, orders, stock_levels

#: The flow most worker tests drive.
FLOW = "orders"


@dataclass
class FleetRun:
    """A started fleet on one in-memory broker, with what a test needs to drive and inspect it."""

    settings: Settings
    broker: MemoryBroker
    fleet: Fleet
    worker: Worker
    engine: Engine
    erp: FakeDownstream
    outcomes: Outcomes
    systems: dict[str, FakeDownstream]
    #: The delivery relay, not started: `settle` runs it in the test's thread until the backlog is sent.
    relay: Relay

    @property
    def queue(self) -> str:
        return self.settings.queue_name(FLOW)

    def publish(
        self, body: bytes, *, routing_key: str = "order.created", headers: dict[str, Any] | None = None
    ) -> None:
        """Publish to the topic exchange, as an upstream system does."""
        self.broker.publish(self.settings.exchange, routing_key, body, dict(headers or {}))

    def join(self, timeout_ms: int = 10_000) -> None:
        """Wait until every flow queue and its delay queue are empty and idle."""
        for flow in self.fleet.flows:
            self.broker.join(self.settings.queue_name(flow.name), timeout=timeout_ms)

    def settle(self, timeout_ms: int = 10_000) -> int:
        """Join the queue, send the deliveries it recorded, then drain dead letters into the archive;
        return how many dead letters the broker's queues held."""
        self.join(timeout_ms)
        self.deliver(timeout_ms / 1000)
        return drain_memory(self.broker, self.engine, self.fleet.dead_letter_queues())

    def deliver(self, timeout: float = 10.0) -> int:
        """Run the relay until it has had nothing to send for 0.3 s; return how many outcomes it recorded."""
        return self.relay.drain(timeout=timeout, quiet=0.3)

    def run(self, *bodies: bytes, headers: dict[str, Any] | None = None) -> int:
        """Publish `bodies` in order and settle."""
        for body in bodies:
            self.publish(body, headers=headers)
        return self.settle()

    def tally(self, outcome: str, flow: str = FLOW) -> int:
        return self.outcomes.tally[(flow, outcome)]

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every archived dead letter, whole (body, headers, history), oldest first."""
        with self.engine.connect() as connection:
            rows, _total = list_dead_letters(connection, DeadLetterFilter(status=None), limit=1000)
            records = [get_dead_letter(connection, row["id"]) for row in reversed(rows)]
        return [record for record in records if record is not None]

    def orders(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            return {row["order_id"]: dict(row) for row in connection.execute(select(orders)).mappings()}

    def order_lines(self, order_id: str) -> list[dict[str, Any]]:
        query = select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def reserved(self, sku: str, location: str) -> int:
        query = select(stock_levels.c.reserved).where(stock_levels.c.sku == sku, stock_levels.c.location == location)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


FleetRunner = Callable[..., FleetRun]


#: The outcome of one in-process `flowfleet ARGS...` run (the `cli` fixture).
@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Ran]
