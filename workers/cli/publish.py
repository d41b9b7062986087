"""`flowfleet publish`: envelopes from a JSON Lines file onto the exchange, each confirmed by the broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.output import print_json
from workers.messaging import topology as topo
from workers.messaging.publisher import ConfirmedPublisher, Outgoing
from workers.settings import Settings, redact_url

#: Lines of a publish report printed to the terminal; --json has them all.
MAX_LISTED_FAILURES = 50


def register(sub: Subparsers) -> None:
    publish_parser = runs(
        sub.add_parser("publish", help="publish envelopes from a JSON Lines file, with confirms"), publish
    )
    publish_parser.add_argument("file", help="JSON Lines file of envelopes ('-' for stdin)")
    publish_parser.add_argument("--dry-run", action="store_true", help="validate the lines, publish nothing")
    publish_parser.add_argument("--json", action="store_true")


def _read_lines(path: str) -> Iterator[tuple[int, str]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115  # closed below
    try:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line.strip()
    finally:
        if stream is not sys.stdin:
            stream.close()


def publish(args: argparse.Namespace, settings: Settings) -> int:
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
    if report.unreachable:
        url = redact_url(settings.broker_url.get_secret_value())
        raise CommandError(f"cannot reach the broker at {url}: none of {len(outgoing)} envelope(s) was published")
    failed = {line_numbers[index]: reason for index, reason in sorted(report.failed.items())}
    if args.json:
        print_json({"confirmed": report.confirmed, "failed": [{"line": n, "reason": r} for n, r in failed.items()]})
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
