"""The `dlq` commands' shared arguments: the selectors and the filter they describe, times, the operator."""

from __future__ import annotations

import argparse
import getpass
import os
import re
from datetime import UTC, datetime, timedelta

from workers.cli.command import CommandError
from workers.failures import STAGES
from workers.store.archive.records import DeadLetterFilter
from workers.store.archive.status import OPEN, STATUSES

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def filters(parser: argparse.ArgumentParser, *, status: bool) -> None:
    parser.add_argument("ids", type=int, nargs="*", metavar="ID", help="these dead letters")
    parser.add_argument("--group", metavar="FINGERPRINT", help="a failure group (see `dlq groups`)")
    parser.add_argument("--flow")
    parser.add_argument("--stage", choices=STAGES)
    parser.add_argument("--contract")
    parser.add_argument("--version", type=int)
    parser.add_argument("--error-type")
    parser.add_argument("--message-id")
    parser.add_argument("--since", help="last failed at or after: ISO date/time, or e.g. 2h, 3d")
    parser.add_argument("--until", help="last failed before: ISO date/time, or e.g. 1h")
    parser.add_argument(
        "--key", action="append", default=[], metavar="NAME=VALUE", help="business key, across flows (repeatable)"
    )
    if status:
        parser.add_argument("--status", default=OPEN, help="|".join((*STATUSES, "any")))


def write_arguments(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
    parser.add_argument("--reason", required=reason_required, help="why (recorded in the audit trail)")
    parser.add_argument("--actor", help="who (default FLOWFLEET_OPERATOR or the OS user)")
    parser.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    parser.add_argument("--json", action="store_true")


def actor_of(args: argparse.Namespace) -> str:
    given = getattr(args, "actor", None) or os.environ.get("FLOWFLEET_OPERATOR")
    if given:
        return str(given)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """`2h`/`3d` ago, or an ISO date or date-time (UTC unless it names its zone)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = relative.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"not a time: {text!r} (use an ISO date like 2026-11-22, a time, or 2h / 3d)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def selection(args: argparse.Namespace, *, status: str | None) -> DeadLetterFilter:
    """The filter the selector arguments describe."""
    keys: list[tuple[str, str]] = []
    for pair in args.key:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise CommandError(f"--key takes NAME=VALUE, e.g. order_id=ORD-1234 (got {pair!r})")
        keys.append((name, value))
    return DeadLetterFilter(
        flow=args.flow,
        stage=args.stage,
        status=status,
        contract=args.contract,
        message_id=args.message_id,
        version=args.version,
        error_type=args.error_type,
        fingerprint=args.group,
        since=None if args.since is None else parse_moment(args.since),
        until=None if args.until is None else parse_moment(args.until),
        keys=tuple(keys),
        ids=tuple(args.ids),
    )


def read_status(args: argparse.Namespace) -> str | None:
    if args.status == "any":
        return None
    if args.status not in STATUSES:
        raise CommandError(f"--status is one of {', '.join(STATUSES)} or any (got {args.status!r})")
    return str(args.status)


def write_selection(args: argparse.Namespace) -> DeadLetterFilter:
    where = selection(args, status=OPEN)
    if not where.narrows and not args.all:
        raise CommandError("select what to act on: IDs, --group, a filter (--flow, --key, …), or --all")
    return where
