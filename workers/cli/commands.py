"""What each `flowfleet` command does, behind the argument parsing in workers.cli."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pika
import pika.exceptions
from pydantic import ValidationError

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from contracts.published import REGISTRY
from contracts.schema import contract_schema
from workers.fleet import topology
from workers.messaging import topology as topo
from workers.messaging.management import ManagementApi
from workers.messaging.publisher import ConfirmedPublisher, Outgoing
from workers.settings import ConfigurationError, Settings, redact_url
from workers.store.db import make_engine, migrate

#: Lines of a publish report printed to the terminal; --json has them all.
MAX_LISTED_FAILURES = 50


class CommandError(Exception):
    """A command could not do its job; the message says why, in plain words."""


def run(args: argparse.Namespace) -> int:
    # `dlq` parsers name their own handler (workers.cli.dlq); the rest are looked up here.
    handler = getattr(args, "handler", None) or COMMANDS[(args.command, getattr(args, "action", None))]
    try:
        return handler(args)
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    except ValidationError as error:
        raise CommandError(f"invalid configuration: {error}") from None
    except pika.exceptions.ChannelClosedByBroker as error:
        raise CommandError(topo.explain(error, "the broker topology") + "; see `flowfleet topology check`") from None
    except pika.exceptions.AMQPConnectionError as error:
        url = redact_url(Settings().broker_url.get_secret_value())
        raise CommandError(f"cannot reach the broker at {url}: {type(error).__name__}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dump_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=2)


def _print_json(value: Any) -> None:
    print(dump_json(value))


def demo(_args: argparse.Namespace) -> int:
    from workers.demo import embedded  # noqa: PLC0415  # only the demo needs the demo's imports

    embedded.run()
    return 0


def worker(args: argparse.Namespace) -> int:
    from workers.cli.worker import run_worker  # noqa: PLC0415  # keeps the CLI's start-up light

    return run_worker(
        Settings(),
        flows=args.flow,
        threads=args.threads,
        drain=not args.no_drain,
        relay=not args.no_relay,
        relay_only=args.relay_only,
    )


def _channel_opener(settings: Settings) -> tuple[pika.BlockingConnection, Callable[[], Any]]:
    connection = pika.BlockingConnection(topo.connection_parameters(settings.broker_url.get_secret_value()))
    return connection, connection.channel


def topology_apply(args: argparse.Namespace) -> int:
    settings = Settings()
    plan = topology(settings)
    if args.dry_run:
        print(json.dumps(topo.definitions(plan), indent=2))
        return 0
    connection, open_channel = _channel_opener(settings)
    try:
        for line in topo.apply(open_channel(), plan):
            print(f"declared {line}")
    finally:
        connection.close()
    return 0


def topology_export(_args: argparse.Namespace) -> int:
    print(json.dumps(topo.definitions(topology(Settings())), indent=2))
    return 0


def topology_check(args: argparse.Namespace) -> int:
    settings = Settings()
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
        _print_json({"ok": not drift, "drift": drift, "notes": notes})
    else:
        print("topology matches" if not drift else "\n".join(f"DRIFT: {line}" for line in drift))
        for note in notes:
            print(f"note: {note}")
    return 0 if not drift else 1


def _read_lines(path: str) -> Iterator[tuple[int, str]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115  # closed below
    try:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line.strip()
    finally:
        if stream is not sys.stdin:
            stream.close()


def publish(args: argparse.Namespace) -> int:
    settings = Settings()
    outgoing: list[Outgoing] = []
    line_numbers: list[int] = []
    invalid: dict[int, str] = {}
    for number, line in _read_lines(args.file):
        try:
            envelope = decode_envelope(line.encode("utf-8"))
        except RejectedMessage as error:
            invalid[number] = error.reason
            continue
        outgoing.append(Outgoing(envelope.contract, line.encode("utf-8"), envelope.message_id))
        line_numbers.append(number)
    if invalid:
        for number, reason in invalid.items():
            print(f"line {number}: not published: {reason}", file=sys.stderr)
        raise CommandError(f"{len(invalid)} line(s) are not envelopes; nothing was published")
    if args.dry_run:
        print(f"{len(outgoing)} envelope(s) would be published to {settings.exchange}")
        return 0
    publisher = ConfirmedPublisher(
        topo.connection_parameters(settings.broker_url.get_secret_value()), settings.exchange
    )
    report = publisher.publish(outgoing)
    failed = {line_numbers[index]: reason for index, reason in sorted(report.failed.items())}
    if args.json:
        _print_json({"confirmed": report.confirmed, "failed": [{"line": n, "reason": r} for n, r in failed.items()]})
    else:
        print(f"{report.confirmed} of {len(outgoing)} envelope(s) confirmed by the broker")
        for number, reason in list(failed.items())[:MAX_LISTED_FAILURES]:
            print(f"line {number}: NOT published: {reason}", file=sys.stderr)
        if len(failed) > MAX_LISTED_FAILURES:
            print(
                f"... and {len(failed) - MAX_LISTED_FAILURES} more lines not published (--json lists all)",
                file=sys.stderr,
            )
    return 0 if report.ok else 1


def contracts_list(args: argparse.Namespace) -> int:
    rows = [
        {
            "contract": c.name,
            "flow": c.flow,
            "versions": sorted(c.versions),
            "latest": c.latest_version,
            "summary": c.summary,
        }
        for c in REGISTRY
    ]
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            versions = ",".join(f"v{v}" for v in row["versions"])
            print(f"{row['contract']:<24} flow={row['flow']:<12} {versions:<8} {row['summary']}")
    return 0


def contracts_schema(args: argparse.Namespace) -> int:
    try:
        contract = REGISTRY.get(args.name)
        print(json.dumps(contract_schema(contract, args.version), indent=2, ensure_ascii=False))
    except RejectedMessage as error:
        raise CommandError(error.reason) from None
    except KeyError as error:
        raise CommandError(str(error.args[0])) from None
    return 0


def exporter(args: argparse.Namespace) -> int:
    from workers.cli.exporter import run_exporter  # noqa: PLC0415  # keeps the CLI's start-up light

    return run_exporter(Settings(), port=args.port)


def db_upgrade(_args: argparse.Namespace) -> int:
    engine = make_engine(Settings().database_url.get_secret_value())
    migrate(engine)
    engine.dispose()
    print("schema is at the latest revision")
    return 0


COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("demo", None): demo,
    ("worker", None): worker,
    ("topology", "apply"): topology_apply,
    ("topology", "export"): topology_export,
    ("topology", "check"): topology_check,
    ("publish", None): publish,
    ("contracts", "list"): contracts_list,
    ("contracts", "schema"): contracts_schema,
    ("db", "upgrade"): db_upgrade,
    ("exporter", None): exporter,
}
