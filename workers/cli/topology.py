"""`flowfleet topology apply|export|check`: declare the broker topology, print it, or report drift from it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import httpx
import pika

from workers.cli.command import Subparsers, runs
from workers.cli.output import print_json
from workers.fleet import topology
from workers.messaging import topology as topo
from workers.messaging.management import ManagementApi
from workers.settings import Settings


def register(sub: Subparsers) -> None:
    topo_parser = sub.add_parser("topology", help="declare, export or check the broker topology")
    actions = topo_parser.add_subparsers(dest="action", required=True)
    apply_parser = runs(actions.add_parser("apply", help="declare exchange, queues and bindings (idempotent)"), apply)
    apply_parser.add_argument("--dry-run", action="store_true", help="print what would be declared")
    runs(actions.add_parser("export", help="print RabbitMQ definitions JSON"), export)
    check_parser = runs(
        actions.add_parser("check", help="report drift between the broker and the expected topology"), check
    )
    check_parser.add_argument("--json", action="store_true")


def _channel_opener(settings: Settings) -> tuple[pika.BlockingConnection, Callable[[], Any]]:
    connection = pika.BlockingConnection(topo.connection_parameters(settings.broker_url.get_secret_value()))
    return connection, connection.channel


def apply(args: argparse.Namespace, settings: Settings) -> int:
    plan = topology(settings)
    if args.dry_run:
        print_json(topo.definitions(plan))
        return 0
    connection, open_channel = _channel_opener(settings)
    try:
        for line in topo.apply(open_channel(), plan):
            print(f"declared {line}")
    finally:
        connection.close()
    return 0


def export(_args: argparse.Namespace, settings: Settings) -> int:
    print_json(topo.definitions(topology(settings)))
    return 0


def check(args: argparse.Namespace, settings: Settings) -> int:
    plan = topology(settings)
    connection, open_channel = _channel_opener(settings)
    try:
        drift = topo.check(open_channel, plan)
    finally:
        connection.close()
    notes: list[str] = []
    if settings.management_url is None:
        notes.append("bindings not checked: set FLOWFLEET_MANAGEMENT_URL to the RabbitMQ management API")
    else:
        api = ManagementApi(settings.management_url.get_secret_value())
        vhost = pika.URLParameters(settings.broker_url.get_secret_value()).virtual_host
        try:
            drift += topo.missing_bindings(plan, lambda queue: api.queue_bindings(vhost, queue))
        except httpx.HTTPError as error:
            notes.append(f"bindings not checked: the management API did not answer ({type(error).__name__})")
        finally:
            api.close()
    if args.json:
        print_json({"ok": not drift, "drift": drift, "notes": notes})
    else:
        print("topology matches" if not drift else "\n".join(f"DRIFT: {line}" for line in drift))
        for note in notes:
            print(f"note: {note}")
    return 0 if not drift else 1
