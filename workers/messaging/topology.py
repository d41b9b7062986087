"""The broker topology flowfleet needs: the exchange, a quorum queue per flow, its delay and dead-letter queues.

Each flow queue is a quorum queue with a delivery limit, so a message whose worker dies on every
delivery is dead-lettered by the broker instead of looping forever; dead-lettering is at-least-once
(with reject-publish overflow), and the dead-letter queue has no TTL, so a dead letter is never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

DELAY_SUFFIX = ".DQ"
DEAD_LETTER_SUFFIX = ".XQ"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    role: str  # "flow" | "delay" | "dead-letter"


@dataclass(frozen=True)
class Topology:
    """What to declare for a set of flows: `routes` maps a flow's queue name to its routing keys."""

    exchange: str
    routes: Mapping[str, tuple[str, ...]]
    delivery_limit: int

    def queues(self) -> list[QueueSpec]:
        specs: list[QueueSpec] = []
        for queue in self.routes:
            dead_letter_queue = queue + DEAD_LETTER_SUFFIX
            specs.append(QueueSpec(queue, self._work_arguments(dead_letter_queue, self.delivery_limit), "flow"))
            # Delayed retries wait unacked in worker memory; a restart redelivers them, so allow more.
            delay_limit = self.delivery_limit * 10
            specs.append(QueueSpec(queue + DELAY_SUFFIX, self._work_arguments(dead_letter_queue, delay_limit), "delay"))
            specs.append(QueueSpec(dead_letter_queue, {"x-queue-type": "quorum"}, "dead-letter"))
        return specs

    def delivery_limits(self) -> dict[str, int]:
        """Each work queue's x-delivery-limit."""
        return {s.name: s.arguments["x-delivery-limit"] for s in self.queues() if "x-delivery-limit" in s.arguments}

    def bindings(self) -> list[tuple[str, str]]:
        return [(queue, key) for queue, keys in self.routes.items() for key in keys]

    @staticmethod
    def _work_arguments(dead_letter_queue: str, delivery_limit: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


def apply(channel: BlockingChannel, topology: Topology) -> list[str]:
    """Declare everything (idempotent); return what was declared, in plain words."""
    done = [f"exchange {topology.exchange} (topic, durable)"]
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    for spec in topology.queues():
        channel.queue_declare(spec.name, durable=True, arguments=spec.arguments)
        done.append(f"{spec.role} queue {spec.name}")
    for queue, key in topology.bindings():
        channel.queue_bind(queue, topology.exchange, routing_key=key)
        done.append(f"binding {topology.exchange} --{key}--> {queue}")
    return done


def check(open_channel: Callable[[], BlockingChannel], topology: Topology) -> list[str]:
    """Compare the broker with the topology without creating anything; return each drift in plain words.

    Each object is first declared passively (the broker answers 404 if it is missing), then declared
    with the expected settings, which changes nothing when they match and is refused when they differ.
    """
    probes = [_exchange_probe(topology.exchange), *(_queue_probe(spec) for spec in topology.queues())]
    drift: list[str] = []
    for what, exists, matches in probes:
        channel = open_channel()
        try:
            exists(channel)
            matches(channel)
        except pika.exceptions.ChannelClosedByBroker as error:
            drift.append(explain(error, what))
            continue
        channel.close()
    return drift


def missing_bindings(topology: Topology, bindings_of: Callable[[str], set[tuple[str, str]]]) -> list[str]:
    """Each binding the topology needs that the broker does not have, in plain words."""
    drift: list[str] = []
    for queue in topology.routes:
        existing = bindings_of(queue)
        for _queue, key in (b for b in topology.bindings() if b[0] == queue):
            if (topology.exchange, key) not in existing:
                drift.append(
                    f"queue {queue} is not bound to {topology.exchange} with routing key {key!r}: "
                    f"events of that contract are unroutable. Run `flowfleet topology apply`"
                )
    return drift


Probe = tuple[str, Callable[[BlockingChannel], object], Callable[[BlockingChannel], object]]


def _exchange_probe(name: str) -> Probe:
    return (
        f"exchange {name}",
        lambda channel: channel.exchange_declare(name, passive=True),
        lambda channel: channel.exchange_declare(name, exchange_type="topic", durable=True),
    )


def _queue_probe(spec: QueueSpec) -> Probe:
    return (
        f"{spec.role} queue {spec.name}",
        lambda channel: channel.queue_declare(spec.name, passive=True),
        lambda channel: channel.queue_declare(spec.name, durable=True, arguments=spec.arguments),
    )


def explain(error: pika.exceptions.ChannelClosedByBroker, what: str) -> str:
    text = str(error.reply_text)
    if error.reply_code == 404:
        return f"{what} is missing: run `flowfleet topology apply`"
    if "x-message-ttl" in text:
        return (
            f"{what} has a message TTL: dead letters in it would silently expire. Move its messages "
            f"out, delete it, and run `flowfleet topology apply` ({text})"
        )
    if "x-queue-type" in text:
        return (
            f"{what} exists as a different queue type than the quorum queue flowfleet needs "
            f"(without it, a message that crashes its worker loops forever). Drain it, delete it, and "
            f"run `flowfleet topology apply` ({text})"
        )
    return f"{what} exists with other settings than flowfleet declares: {text}"


def definitions(topology: Topology, vhost: str = "/") -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (importable with the management plugin)."""
    return {
        "exchanges": [
            {
                "name": topology.exchange,
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "queues": [
            {"name": s.name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": s.arguments}
            for s in topology.queues()
        ],
        "bindings": [
            {
                "source": topology.exchange,
                "vhost": vhost,
                "destination": queue,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }
            for queue, key in topology.bindings()
        ],
    }


def connection_parameters(url: str) -> pika.URLParameters:
    """pika parameters for an AMQP URL, with a heartbeat and a bounded connect timeout."""
    parameters = pika.URLParameters(url)
    parameters.heartbeat = 30
    parameters.blocked_connection_timeout = 60
    parameters.socket_timeout = 10
    return parameters
