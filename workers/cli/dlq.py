"""`flowfleet dlq …`: the on-call engineer's dead-letter commands, kept apart from the other commands.

Reads (list, groups, show, export, actions) mask personal data unless --unmask and never change the
schema; writes (replay, repair, discard, restore, purge) take --reason, have --dry-run, and are
recorded as actions with the operator's name (--actor, else FLOWFLEET_OPERATOR, else the OS user).
Every command refuses to run on an archive whose schema is not the one this code knows.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from contracts.published import REGISTRY
from workers.cli.commands import CommandError, dump_json
from workers.deadletters import redelivery
from workers.deadletters.preflight import ALREADY_APPLIED, STILL_FAILING, WOULD_PASS, check
from workers.deadletters.repair import RepairRefused, repair
from workers.deadletters.replay import Progress, Publisher, Replayer, ReplayError, ReplayOptions, ReplayReport
from workers.failures import STAGES
from workers.observability.masking import mask, mask_text
from workers.settings import Settings, redact_url
from workers.store.archive import actions as ops
from workers.store.archive.records import (
    DeadLetterFilter,
    dead_letter_groups,
    get_dead_letter,
    iter_dead_letters,
    list_dead_letters,
    matching_ids,
)
from workers.store.db import MIGRATIONS, make_engine

STATUSES = ("open", "replayed", "discarded", "resolved")
RUNBOOKS = "runbooks"
#: Records listed in a text report; --json has them all.
MAX_LISTED = 20

Handler = Callable[[argparse.Namespace], int]


# -- the parser block ------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """The `dlq` command and its actions, each parser naming the function that runs it."""
    dlq = sub.add_parser("dlq", help="triage, replay, repair, discard and export dead letters")
    actions = dlq.add_subparsers(dest="action", required=True)
    _read_parsers(actions)
    _replay_parsers(actions)
    _other_write_parsers(actions)


def _read_parsers(actions: Any) -> None:
    listing = actions.add_parser("list", help="dead letters matching a filter, newest first")
    _filters(listing, status=True)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=dlq_list)

    groups = actions.add_parser("groups", help="dead letters grouped by failure fingerprint")
    _filters(groups, status=True)
    groups.add_argument("--json", action="store_true")
    groups.add_argument("--unmask", action="store_true", help="show personal data in the sample reasons")
    groups.set_defaults(handler=dlq_groups)

    show = actions.add_parser("show", help="one dead letter: envelope, headers, error, history, replays")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.add_argument("--unmask", action="store_true", help="show personal data (use only when needed)")
    show.set_defaults(handler=dlq_show)

    export = actions.add_parser("export", help="dead letters as JSON Lines, for a ticket or an evidence pack")
    _filters(export, status=True)
    export.add_argument("--output", help="file to write (default stdout)")
    export.add_argument("--unmask", action="store_true", help="export personal data (recorded as an action)")
    export.add_argument("--reason", help="why (recorded with an unmasked export)")
    export.add_argument("--actor", help="who (default FLOWFLEET_OPERATOR or the OS user)")
    export.add_argument("--json", action="store_true", help="accepted for uniformity: the output is always JSON")
    export.set_defaults(handler=dlq_export)

    history = actions.add_parser("actions", help="the audit log of operator actions, or one with its outcomes")
    history.add_argument("id", type=int, nargs="?")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--offset", type=int, default=0)
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=dlq_actions)


def _replay_parsers(actions: Any) -> None:
    replay = actions.add_parser("replay", help="send dead letters back into their flows, safely and audited")
    _filters(replay, status=False)
    replay.add_argument("--all", action="store_true", help="every open dead letter (no other selector needed)")
    replay.add_argument("--resume", type=int, metavar="ACTION_ID", help="finish an interrupted or stopped replay")
    replay.add_argument("--rate", type=float, help="messages per second (default: as fast as confirms come)")
    replay.add_argument("--canary", type=int, default=0, metavar="N", help="send N first; go on only if applied")
    replay.add_argument("--canary-wait", type=float, default=60.0, metavar="SECONDS")
    replay.add_argument("--wait", type=float, metavar="SECONDS", help="wait for outcomes at the end (default 10)")
    _write_arguments(replay, reason_required=False)
    replay.set_defaults(handler=dlq_replay)

    repair_parser = actions.add_parser("repair", help="patch one dead letter's data (JSON Patch) and replay it")
    repair_parser.add_argument("id", type=int)
    repair_parser.add_argument("--patch", required=True, help="a JSON Patch: inline JSON, a file, or - for stdin")
    repair_parser.add_argument("--wait", type=float, default=10.0, metavar="SECONDS")
    repair_parser.add_argument("--unmask", action="store_true", help="show personal data in the dry run")
    _write_arguments(repair_parser, reason_required=True)
    repair_parser.set_defaults(handler=dlq_repair)


def _other_write_parsers(actions: Any) -> None:
    discard = actions.add_parser("discard", help="suppress dead letters (kept, status discarded, restorable)")
    _filters(discard, status=False)
    discard.add_argument("--all", action="store_true", help="every open dead letter")
    _write_arguments(discard, reason_required=True)
    discard.set_defaults(handler=dlq_discard)

    restore = actions.add_parser("restore", help="reopen discarded dead letters")
    restore.add_argument("ids", type=int, nargs="+", metavar="ID")
    _write_arguments(restore, reason_required=True)
    restore.set_defaults(handler=dlq_restore)

    purge = actions.add_parser("purge", help="delete resolved or discarded dead letters closed before a date")
    purge.add_argument("--resolved-before", required=True, metavar="DATE", help="ISO date or time, or e.g. 30d")
    _write_arguments(purge, reason_required=True)
    purge.set_defaults(handler=dlq_purge)


def _filters(parser: argparse.ArgumentParser, *, status: bool) -> None:
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
        parser.add_argument("--status", default="open", help="open|replayed|discarded|resolved|any")


def _write_arguments(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
    parser.add_argument("--reason", required=reason_required, help="why (recorded in the audit trail)")
    parser.add_argument("--actor", help="who (default FLOWFLEET_OPERATOR or the OS user)")
    parser.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    parser.add_argument("--json", action="store_true")


# -- shared pieces ---------------------------------------------------------------------------------


@contextmanager
def archive_engine() -> Iterator[Engine]:
    """An engine on the archive, whose schema must be the one this code knows (`db upgrade` migrates it)."""
    url = Settings().database_url.get_secret_value()
    engine = make_engine(url)
    try:
        _require_current_schema(engine, url)
        yield engine
    finally:
        engine.dispose()


def _require_current_schema(engine: Engine, url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as error:
        raise CommandError(f"cannot reach the archive at {redact_url(url)}: {type(error.orig).__name__}") from None
    if current is None:
        raise CommandError("the database has no archive yet: run `flowfleet db upgrade`")
    if current != head:
        raise CommandError(f"the archive's schema is at revision {current}, not {head}: run `flowfleet db upgrade`")


def open_publisher(settings: Settings) -> tuple[Publisher, Callable[[], None]]:
    """A confirmed, persistent, mandatory publisher on the broker, and how to close it."""
    from workers.messaging.broker import FleetBroker  # noqa: PLC0415  # only replays need the broker

    broker = FleetBroker(settings.broker_url.get_secret_value(), middleware=[])
    return broker, broker.close


def actor_of(args: argparse.Namespace) -> str:
    given = getattr(args, "actor", None) or os.environ.get("FLOWFLEET_OPERATOR")
    if given:
        return str(given)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


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


def _read_status(args: argparse.Namespace) -> str | None:
    if args.status == "any":
        return None
    if args.status not in STATUSES:
        raise CommandError(f"--status is one of {', '.join(STATUSES)} or any (got {args.status!r})")
    return str(args.status)


def _write_selection(args: argparse.Namespace) -> DeadLetterFilter:
    where = selection(args, status="open")
    if not where.narrows and not args.all:
        raise CommandError("select what to act on: IDs, --group, a filter (--flow, --key, …), or --all")
    return where


def _print_json(value: Any, stream: TextIO | None = None) -> None:
    print(dump_json(value), file=stream or sys.stdout)


def _masked(value: Any, unmask: bool) -> Any:
    return value if unmask else mask(value)


def _text(value: Any) -> str:
    return mask_text(str(value))


def _envelope_or_text(body: bytes) -> dict[str, Any]:
    try:
        return {"envelope": json.loads(body)}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"body": body.decode("utf-8", errors="replace")}


def _readable(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON can carry it: the body as an envelope (or text), a repair's edited body likewise."""
    record = dict(record)
    record.update(_envelope_or_text(bytes(record.pop("body"))))
    replays = []
    for replayed in record.get("replays", []):
        row = dict(replayed)
        edited = row.pop("body", None)
        if edited is not None:
            row["edited"] = _envelope_or_text(bytes(edited))
        replays.append(row)
    record["replays"] = replays
    return record


# -- reads -----------------------------------------------------------------------------------------


def dlq_list(args: argparse.Namespace) -> int:
    where = selection(args, status=_read_status(args))
    with archive_engine() as engine, engine.connect() as connection:
        rows, total = list_dead_letters(connection, where, limit=args.limit, offset=args.offset)
    rows = [mask(row) for row in rows]
    if args.json:
        _print_json({"total": total, "offset": args.offset, "items": rows})
        return 0
    print(f"{total} dead letter(s); showing {len(rows)} from {args.offset}")
    for row in rows:
        print(
            f"#{row['id']:<6} {row['last_failed_at']:%Y-%m-%d %H:%M:%S} {row['status']:<9} {row['flow']:<11} "
            f"{row['stage']:<8} {row['contract'] or '-':<18} attempts={row['attempts']:<3} "
            f"{row['error_type']}: {row['error_message'][:100]}"
        )
    return 0


def dlq_groups(args: argparse.Namespace) -> int:
    where = selection(args, status=_read_status(args))
    with archive_engine() as engine, engine.connect() as connection:
        groups = dead_letter_groups(connection, where)
    for group in groups:
        group["runbooks"] = [f"{RUNBOOKS}/{flow}.md" for flow in group["flows"]]
        group.pop("sample_id", None)
        if not args.unmask:
            group["sample_reason"] = mask_text(group["sample_reason"])
    if args.json:
        _print_json({"groups": groups, "total": sum(g["count"] for g in groups)})
        return 0
    print(f"{len(groups)} failure group(s), {sum(g['count'] for g in groups)} dead letter(s)")
    for group in groups:
        print(
            f"\n{group['fingerprint']}  {group['count']} x {group['stage']}/{group['error_type']}  "
            f"flows: {', '.join(group['flows'])}\n"
            f"  first {group['first_seen']:%Y-%m-%d %H:%M:%S}, last {group['last_seen']:%Y-%m-%d %H:%M:%S}\n"
            f"  e.g.: {group['sample_reason'][:200]}\n"
            f"  runbook: {', '.join(group['runbooks'])}\n"
            f"  replay it: flowfleet dlq replay --group {group['fingerprint']} --dry-run"
        )
    return 0


def dlq_show(args: argparse.Namespace) -> int:
    with archive_engine() as engine, engine.connect() as connection:
        found = get_dead_letter(connection, args.id)
    if found is None:
        raise CommandError(f"no dead letter #{args.id}")
    record = _masked(_readable(found), args.unmask)
    if args.json:
        _print_json(record)
        return 0
    for key in (
        "id",
        "flow",
        "queue",
        "stage",
        "status",
        "contract",
        "version",
        "message_id",
        "dedup_key",
        "business_keys",
        "error_type",
        "error_message",
        "field_paths",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "fingerprint",
        "replay_of",
        "replayed_as",
    ):
        print(f"{key:>16}: {record.get(key)}")
    print(f"{'traceback':>16}:\n{record.get('traceback') or '-'}")
    print(f"{'body':>16}:\n{dump_json(record.get('envelope', record.get('body')))}")
    print(f"{'replays':>16}:")
    for row in record["replays"]:
        became = f" -> dead letter #{row['new_dead_letter_id']}" if row["new_dead_letter_id"] else ""
        edited = " (edited copy)" if "edited" in row else ""
        print(
            f"  action #{row['action_id']} {row['kind']}{edited} by {row['actor']} at {row['claimed_at']}: "
            f"{row['outcome']}{became} — {row['reason']}"
        )
    print(f"{'history':>16}:")
    for event in record["history"]:
        print(f"  {event['at']} {event['actor']} {event['action']}: {event['reason']}")
    return 0


def dlq_export(args: argparse.Namespace) -> int:
    where = selection(args, status=_read_status(args))
    count = 0
    with archive_engine() as engine:
        with engine.connect() as connection:
            stream = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
            try:
                for record in iter_dead_letters(connection, where):
                    line = json.dumps(_masked(_readable(record), args.unmask), default=_json_value, ensure_ascii=False)
                    stream.write(line + "\n")
                    count += 1
            finally:
                if stream is not sys.stdout:
                    stream.close()
        if args.unmask:
            with engine.begin() as connection:
                ops.create_action(
                    connection,
                    kind=ops.EXPORT,
                    actor=actor_of(args),
                    reason=args.reason,
                    selection=where.to_json(),
                    options={"unmask": True, "output": args.output or "-"},
                    status=ops.FINISHED,
                    counts={"exported": count},
                )
    print(f"exported {count} dead letter(s)" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dlq_actions(args: argparse.Namespace) -> int:
    with archive_engine() as engine, engine.connect() as connection:
        if args.id is None:
            rows, total = list_actions_masked(connection, args)
            if args.json:
                _print_json({"total": total, "offset": args.offset, "items": rows})
                return 0
            print(f"{total} action(s); showing {len(rows)} from {args.offset}")
            for row in rows:
                print(
                    f"#{row['id']:<5} {row['started_at']:%Y-%m-%d %H:%M:%S} {row['kind']:<8} {row['status']:<11} "
                    f"by {row['actor']}: {row['reason'] or '-'}  {_counts_text(row['counts'])}"
                )
            return 0
        action = ops.get_action(connection, args.id)
        if action is None:
            raise CommandError(f"no action #{args.id}")
        action = mask(_without_body(action))
        action["messages"] = ops.action_replays(connection, args.id)
        action["outcomes"] = ops.outcome_counts(connection, args.id)
    if args.json:
        _print_json(action)
        return 0
    for key in ("id", "kind", "status", "actor", "reason", "started_at", "finished_at", "cutoff", "note"):
        print(f"{key:>12}: {action.get(key)}")
    print(f"{'selection':>12}: {json.dumps(action['selection'])}")
    print(f"{'options':>12}: {json.dumps(action['options'])}")
    print(f"{'counts':>12}: {_counts_text(action['counts'])}")
    print(f"{'outcomes':>12}: {_counts_text(action['outcomes'])}")
    for row in action["messages"][:200]:
        became = f" -> #{row['new_dead_letter_id']}" if row["new_dead_letter_id"] else ""
        print(f"  #{row['dead_letter_id']:<6} {row['flow']:<11} {row['outcome']}{became}")
    return 0


def list_actions_masked(connection: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    rows, total = ops.list_actions(connection, limit=args.limit, offset=args.offset)
    return [mask(_without_body(row)) for row in rows], total


def _without_body(action: dict[str, Any]) -> dict[str, Any]:
    """An action as shown: a repair's edited body is in `dlq show`, masked, not here."""
    options = dict(action.get("options") or {})
    if "body" in options:
        options["body"] = "(the edited envelope: see `flowfleet dlq show`)"
    return action | {"options": options}


def _counts_text(counts: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (counts or {}).items() if v not in (0, None, False))


# -- replay and repair -----------------------------------------------------------------------------


def dlq_replay(args: argparse.Namespace) -> int:
    if args.rate is not None and args.rate <= 0:
        raise CommandError("--rate is messages per second, above 0")
    if args.resume is not None:
        changes = {k: v for k, v in (("rate", args.rate), ("wait", args.wait)) if v is not None}
        return _run_replay(args, lambda replayer: replayer.resume(args.resume, actor=actor_of(args), changes=changes))
    if not args.reason and not args.dry_run:
        raise CommandError("a replay needs --reason (it is recorded in the audit trail)")
    where = _write_selection(args)
    if _replay_delivery_dead_letters(args, where):
        return 0
    if args.dry_run:
        return _replay_dry_run(args, where)
    if args.canary < 0:
        raise CommandError("--canary is a number of messages, 0 or more")
    wait = 10.0 if args.wait is None else args.wait
    options = ReplayOptions(rate=args.rate, canary=args.canary, canary_wait=args.canary_wait, wait=wait)
    return _run_replay(
        args, lambda replayer: replayer.start(where, actor=actor_of(args), reason=args.reason, options=options)
    )


def _replay_delivery_dead_letters(args: argparse.Namespace, where: DeadLetterFilter) -> bool:
    """Dead letters of stage `delivery` go back to the outbox (same Idempotency-Key), not to the broker.

    Returns True when the selection was only about deliveries (`--stage delivery`): nothing is left to do.
    """
    with archive_engine() as engine, engine.begin() as connection:
        ids = redelivery.delivery_dead_letters(connection, where)
        if args.dry_run:
            for item in redelivery.preview(connection, ids):
                print(
                    f"dry run: #{item['dead_letter_id']} would be sent again to {item['system']} "
                    f"POST {item['path']} with Idempotency-Key {item['idempotency_key']}"
                )
        elif ids:
            done = redelivery.replay_deliveries(
                connection, ids, actor=actor_of(args), reason=args.reason, selection=where.to_json()
            )
            print(
                f"action {done.action_id}: {len(done.sent_again)} delivery dead letter(s) back in the outbox, "
                f"sent again with their own Idempotency-Keys: {done.sent_again}"
                + (f"; skipped (replayed meanwhile): {done.skipped}" if done.skipped else "")
            )
    return where.stage == redelivery.STAGE


def _replay_dry_run(args: argparse.Namespace, where: DeadLetterFilter) -> int:
    settings = Settings()
    max_age = timedelta(seconds=settings.max_event_age_seconds)
    items: list[dict[str, Any]] = []
    with archive_engine() as engine, engine.connect() as connection:
        for record in iter_dead_letters(connection, where):
            verdict = check(
                connection, bytes(record["body"]), flow=record["flow"], registry=REGISTRY, max_event_age=max_age
            )
            items.append(
                {
                    "id": record["id"],
                    "flow": record["flow"],
                    "verdict": verdict.verdict,
                    "stage": verdict.stage,
                    "reason": None if verdict.reason is None else _text(verdict.reason),
                    "field_paths": list(verdict.field_paths),
                    "dedup_key": verdict.dedup_key,
                }
            )
    tally = Counter(item["verdict"] for item in items)
    reasons = Counter((item["stage"], item["reason"]) for item in items if item["verdict"] == STILL_FAILING)
    report = {
        "dry_run": True,
        "selected": len(items),
        WOULD_PASS: tally[WOULD_PASS],
        ALREADY_APPLIED: tally[ALREADY_APPLIED],
        STILL_FAILING: tally[STILL_FAILING],
        "reasons": [{"stage": s, "reason": r, "count": n} for (s, r), n in reasons.most_common()],
        "items": items,
    }
    if args.json:
        _print_json(report)
        return 0
    print(f"dry run: {len(items)} open dead letter(s) selected; nothing was sent, nothing recorded")
    print(
        f"  would pass:      {tally[WOULD_PASS]}  (decode, contract, upcast and age checks pass; the handler decides)"
    )
    print(f"  already applied: {tally[ALREADY_APPLIED]}  (a replay would be counted a duplicate, with no effect)")
    print(f"  still failing:   {tally[STILL_FAILING]}")
    for (stage, reason), count in reasons.most_common(MAX_LISTED):
        print(f"    {count} x {stage}: {reason}")
    return 0


def _run_replay(args: argparse.Namespace, run: Callable[[Replayer], ReplayReport]) -> int:
    settings = Settings()
    with archive_engine() as engine:
        publisher, close = open_publisher(settings)
        progress = _progress_bar if sys.stderr.isatty() and not args.json else None
        replayer = Replayer(engine, publisher, exchange=settings.exchange, registry=REGISTRY, progress=progress)
        try:
            with _interruptible(replayer):
                report = run(replayer)
        except ReplayError as error:
            raise CommandError(str(error)) from None
        except OperationalError as error:
            raise CommandError(
                f"the archive stopped answering ({type(error.orig).__name__}); nothing claimed is lost: find the "
                "replay with `flowfleet dlq actions` and finish it with `flowfleet dlq replay --resume ID`"
            ) from None
        finally:
            close()
            if progress is not None:
                print(file=sys.stderr)
    _print_report(args, report)
    return 0 if report.ok else 1


@contextmanager
def _interruptible(replayer: Replayer) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP stop the replay after the message in hand (a second Ctrl-C stops at once)."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in handled}

    def stop(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        replayer.interrupt()

    for signum in handled:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _progress_bar(progress: Progress) -> None:
    width = 30
    done = min(progress.sent + progress.taken, progress.total)
    filled = width * done // max(progress.total, 1)
    sys.stderr.write(
        f"\rreplay #{progress.action_id} [{'#' * filled}{'.' * (width - filled)}] "
        f"{progress.sent}/{progress.total} sent" + (f", {progress.taken} taken by others" if progress.taken else "")
    )
    sys.stderr.flush()


def _print_report(args: argparse.Namespace, report: ReplayReport) -> None:
    data = report.to_json()
    for refailure in data["failed_again"]:
        refailure["error_message"] = _text(refailure["error_message"])
    data["not_published"] = [item | {"reason": _text(item["reason"])} for item in data["not_published"]]
    if args.json:
        _print_json(data)
        return
    outcomes = report.outcomes
    rate = f" at {report.achieved_rate:.1f}/s" if report.achieved_rate else ""
    print(
        f"{report.kind} #{report.action_id} {report.status}: {report.selected} selected, {report.sent} sent{rate}"
        + (f", {report.resent} in-doubt sent again" if report.resent else "")
        + f" ({report.seconds:.1f} s)"
    )
    if report.note:
        print(f"  {report.note}")
    print(
        f"  outcomes: {outcomes.get(ops.APPLIED, 0)} applied, {outcomes.get(ops.DUPLICATE, 0)} duplicate "
        f"(already applied), {outcomes.get(ops.FAILED_AGAIN, 0)} failed again, {outcomes.get(ops.PENDING, 0)} pending"
    )
    if outcomes.get(ops.PENDING):
        print(
            "  pending outcomes are recorded when a worker handles them: see `flowfleet dlq actions "
            f"{report.action_id}`"
        )
    for refailure in data["failed_again"][:MAX_LISTED]:
        same = "same fingerprint" if refailure["same_fingerprint"] else "NEW fingerprint"
        print(
            f"  failed again: #{refailure['dead_letter_id']} -> #{refailure['new_dead_letter_id']} ({same}): "
            f"{refailure['error_type']}: {refailure['error_message'][:150]}"
        )
    for item in data["not_published"][:MAX_LISTED]:
        print(f"  NOT published: #{item['dead_letter_id']}: {item['reason']}")
    if report.taken:
        print(f"  taken by another action or no longer open: {len(report.taken)} (not sent by this one)")
    print(f"  arrived since the replay started, matching its selection (not replayed): {report.arrived_since}")


def dlq_repair(args: argparse.Namespace) -> int:
    patch = _read_patch(args.patch)
    with archive_engine() as engine:
        with engine.connect() as connection:
            record = get_dead_letter(connection, args.id)
        if record is None:
            raise CommandError(f"no dead letter #{args.id}")
        if record["status"] != "open":
            raise CommandError(
                f"dead letter #{args.id} is {record['status']}, not open"
                + (f": repair its newest copy, #{record['replayed_as'][-1]}" if record["replayed_as"] else "")
            )
        if record["stage"] == redelivery.STAGE:
            return _repair_delivery(engine, args, patch)
        try:
            repaired = repair(record, patch, REGISTRY)
        except RepairRefused as error:
            detail = f" (fields: {', '.join(error.field_paths)})" if error.field_paths else ""
            raise CommandError(f"repair refused, nothing was sent: {_text(error.reason)}{detail}") from None
        if args.dry_run:
            settings = Settings()
            with engine.connect() as connection:
                verdict = check(
                    connection,
                    repaired.body,
                    flow=record["flow"],
                    registry=REGISTRY,
                    max_event_age=timedelta(seconds=settings.max_event_age_seconds),
                )
            result = {
                "dry_run": True,
                "dead_letter_id": args.id,
                "verdict": verdict.verdict,
                "stage": verdict.stage,
                "reason": None if verdict.reason is None else _text(verdict.reason),
                "dedup_key": repaired.dedup_key,
                "data": _masked(repaired.data, args.unmask),
            }
            if args.json:
                _print_json(result)
            else:
                print(f"dry run: the edit passes contract {repaired.contract} v{repaired.version}; nothing was sent")
                print(f"  dedup key unchanged: {repaired.dedup_key}")
                print(f"  today's checks: {verdict.verdict}" + (f" ({result['reason']})" if verdict.reason else ""))
                print(f"  edited data:\n{dump_json(result['data'])}")
            return 0
    extra = {"patch": patch, "body": repaired.body.decode("utf-8"), "dead_letter_id": args.id}
    options = ReplayOptions(wait=args.wait)
    where = DeadLetterFilter(ids=(args.id,), status=None)
    return _run_replay(
        args,
        lambda replayer: replayer.start(
            where, actor=actor_of(args), reason=args.reason, options=options, kind=ops.REPAIR, extra=extra
        ),
    )


def _repair_delivery(engine: Engine, args: argparse.Namespace, patch: Any) -> int:
    """A delivery dead letter's patch applies to its request body (paths from the body's root)."""
    try:
        with engine.begin() as connection:
            body = redelivery.repair_delivery(
                connection, args.id, patch, actor=actor_of(args), reason=args.reason, dry_run=args.dry_run
            )
    except ValueError as error:
        raise CommandError(f"repair refused, nothing was sent: {error}") from None
    if args.json:
        _print_json({"dry_run": args.dry_run, "dead_letter_id": args.id, "body": _masked(body, args.unmask)})
    elif args.dry_run:
        print(f"dry run: #{args.id}'s request would be sent again as:\n{dump_json(_masked(body, args.unmask))}")
    else:
        print(f"#{args.id}'s patched request is back in the outbox, with its own Idempotency-Key")
    return 0


def _read_patch(given: str) -> Any:
    text = given
    if given == "-":
        text = sys.stdin.read()
    elif not given.lstrip().startswith(("[", "{")):
        try:
            text = Path(given).read_text(encoding="utf-8")
        except OSError as error:
            raise CommandError(f"cannot read the patch file {given}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"the patch is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


# -- discard, restore, purge -----------------------------------------------------------------------


def dlq_discard(args: argparse.Namespace) -> int:
    where = _write_selection(args)
    with archive_engine() as engine:
        with engine.connect() as connection:
            ids = matching_ids(connection, where)
        if args.dry_run:
            return _report_change(args, "would discard", ids, dry_run=True)
        with engine.begin() as connection:
            selection = replace(where, status=None).to_json()
            action_id, moved = _move(
                connection,
                args,
                kind=ops.DISCARD,
                selection=selection,
                ids=ids,
                statuses=("open", "discarded"),
                event="discarded",
            )
            redelivery.suppress_discarded(connection, moved)
    return _report_change(args, "discarded", moved, action_id=action_id, skipped=sorted(set(ids) - set(moved)))


def _move(
    connection: Connection,
    args: argparse.Namespace,
    *,
    kind: str,
    selection: dict[str, Any],
    ids: list[int],
    statuses: tuple[str, str],
    event: str,
) -> tuple[int, list[int]]:
    """One audited status change (discard, restore): the action, each record's move, the counts."""
    action_id = ops.create_action(
        connection, kind=kind, actor=actor_of(args), reason=args.reason, selection=selection, status=ops.FINISHED
    )
    moved = ops.change_status(
        connection,
        ids,
        from_status=statuses[0],
        to_status=statuses[1],
        actor=actor_of(args),
        reason=args.reason,
        action_id=action_id,
        event=event,
    )
    ops.update_counts(connection, action_id, selected=len(ids), **{event: len(moved)})
    return action_id, moved


def dlq_restore(args: argparse.Namespace) -> int:
    ids = sorted(set(args.ids))
    with archive_engine() as engine:
        if args.dry_run:
            with engine.connect() as connection:
                found = list_dead_letters(
                    connection, DeadLetterFilter(ids=tuple(ids), status="discarded"), limit=len(ids)
                )
            would = sorted(int(row["id"]) for row in found[0])
            return _report_change(args, "would restore", would, dry_run=True, skipped=sorted(set(ids) - set(would)))
        with engine.begin() as connection:
            action_id, moved = _move(
                connection,
                args,
                kind=ops.RESTORE,
                selection={"ids": ids},
                ids=ids,
                statuses=("discarded", "open"),
                event="restored",
            )
            redelivery.hold_restored(connection, moved)
    return _report_change(args, "restored", moved, action_id=action_id, skipped=sorted(set(ids) - set(moved)))


def dlq_purge(args: argparse.Namespace) -> int:
    before = parse_moment(args.resolved_before)
    with archive_engine() as engine:
        with engine.connect() as connection:
            doomed = ops.purgeable(connection, before)
        ids = [int(row["id"]) for row in doomed]
        if args.dry_run:
            return _report_change(args, "would purge", ids, dry_run=True)
        with engine.begin() as connection:
            removed = ops.purge(connection, ids)
            by_flow = Counter(f"{row['flow']}/{row['status']}" for row in doomed)
            action_id = ops.create_action(
                connection,
                kind=ops.PURGE,
                actor=actor_of(args),
                reason=args.reason,
                selection={"resolved_before": before.isoformat(), "ids": ids},
                status=ops.FINISHED,
                counts={"purged": removed, **dict(by_flow)},
            )
    return _report_change(args, "purged", ids[:removed], action_id=action_id)


def _report_change(
    args: argparse.Namespace,
    verb: str,
    ids: list[int],
    *,
    action_id: int | None = None,
    dry_run: bool = False,
    skipped: list[int] | None = None,
) -> int:
    skipped = skipped or []
    if args.json:
        _print_json({"dry_run": dry_run, "action_id": action_id, "count": len(ids), "ids": ids, "skipped": skipped})
        return 0
    shown = ", ".join(f"#{i}" for i in ids[:MAX_LISTED]) + (" …" if len(ids) > MAX_LISTED else "")
    audit = f" (action #{action_id})" if action_id is not None else " (dry run: nothing changed)" if dry_run else ""
    print(f"{verb} {len(ids)} dead letter(s){audit}" + (f": {shown}" if ids else ""))
    if skipped:
        print(f"  left alone (not in the status this needs): {', '.join(f'#{i}' for i in skipped[:MAX_LISTED])}")
    return 0
