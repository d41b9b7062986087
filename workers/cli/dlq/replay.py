"""`dlq replay|repair`: send dead letters (or one edited by a JSON Patch) back into their flows, audited."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.exc import OperationalError

from contracts.published import REGISTRY
from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.dlq.archive import archive_engine, masked, shown
from workers.cli.dlq.arguments import actor_of, filters, write_arguments, write_selection
from workers.cli.dlq.deliveries import DELIVERY, repair_delivery, replay_deliveries
from workers.cli.dlq.render import MAX_LISTED, print_report, progress_bar
from workers.cli.output import dump_json, print_json
from workers.deadletters.preflight import ALREADY_APPLIED, STILL_FAILING, WOULD_PASS, check
from workers.deadletters.preview import dry_run
from workers.deadletters.repair import RepairRefused, repair
from workers.deadletters.repair_send import send_repaired
from workers.deadletters.replay import Publisher, Replayer, ReplayError
from workers.deadletters.report import ReplayOptions, ReplayReport
from workers.settings import Settings
from workers.store.archive.records import DeadLetterFilter, get_dead_letter
from workers.store.archive.status import OPEN


def register(actions: Subparsers) -> None:
    replay = actions.add_parser("replay", help="send dead letters back into their flows, safely and audited")
    filters(replay, status=False)
    replay.add_argument("--all", action="store_true", help="every open dead letter (no other selector needed)")
    replay.add_argument("--resume", type=int, metavar="ACTION_ID", help="finish an interrupted or stopped replay")
    replay.add_argument("--rate", type=float, help="messages per second (default: as fast as confirms come)")
    replay.add_argument("--canary", type=int, default=0, metavar="N", help="send N first; go on only if applied")
    replay.add_argument("--canary-wait", type=float, default=60.0, metavar="SECONDS")
    replay.add_argument("--wait", type=float, metavar="SECONDS", help="wait for outcomes at the end (default 10)")
    write_arguments(replay, reason_required=False)
    runs(replay, dlq_replay)

    repair_parser = actions.add_parser("repair", help="patch one dead letter's data (JSON Patch) and replay it")
    repair_parser.add_argument("id", type=int)
    repair_parser.add_argument("--patch", required=True, help="a JSON Patch: inline JSON, a file, or - for stdin")
    repair_parser.add_argument("--wait", type=float, default=10.0, metavar="SECONDS")
    repair_parser.add_argument("--unmask", action="store_true", help="show personal data in the dry run")
    write_arguments(repair_parser, reason_required=True)
    runs(repair_parser, dlq_repair)


def open_publisher(settings: Settings) -> tuple[Publisher, Callable[[], None]]:
    """A confirmed, persistent, mandatory publisher on the broker, and how to close it."""
    from workers.messaging.broker import FleetBroker  # noqa: PLC0415  # only replays need the broker

    broker = FleetBroker(settings.broker_url.get_secret_value(), middleware=[])
    return broker, broker.close


def dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.rate is not None and args.rate <= 0:
        raise CommandError("--rate is messages per second, above 0")
    if args.resume is not None:
        changes = {k: v for k, v in (("rate", args.rate), ("wait", args.wait)) if v is not None}
        return _run_replay(
            args, settings, lambda replayer: replayer.resume(args.resume, actor=actor_of(args), changes=changes)
        )
    if not args.reason and not args.dry_run:
        raise CommandError("a replay needs --reason (it is recorded in the audit trail)")
    where = write_selection(args)
    if replay_deliveries(args, settings, where):
        return 0  # only delivery dead letters were selected: they are back in the outbox
    if args.dry_run:
        return _replay_dry_run(args, settings, where)
    if args.canary < 0:
        raise CommandError("--canary is a number of messages, 0 or more")
    wait = 10.0 if args.wait is None else args.wait
    options = ReplayOptions(rate=args.rate, canary=args.canary, canary_wait=args.canary_wait, wait=wait)
    return _run_replay(
        args,
        settings,
        lambda replayer: replayer.start(where, actor=actor_of(args), reason=args.reason, options=options),
    )


def _replay_dry_run(args: argparse.Namespace, settings: Settings, where: DeadLetterFilter) -> int:
    max_age = timedelta(seconds=settings.max_event_age_seconds)
    with archive_engine(settings) as engine, engine.connect() as connection:
        report = dry_run(connection, where, registry=REGISTRY, max_event_age=max_age, shown=shown)
    if args.json:
        print_json(report)
        return 0
    print(f"dry run: {report['selected']} open dead letter(s) selected; nothing was sent, nothing recorded")
    print(
        f"  would pass:      {report[WOULD_PASS]}  (decode, contract, upcast and age checks pass; the handler decides)"
    )
    print(f"  already applied: {report[ALREADY_APPLIED]}  (a replay would be counted a duplicate, with no effect)")
    for system, count in sorted(report["refused_downstream"].items()):
        print(
            f"    of which {count} were refused for good by {system}: they will fail again unless {system} changed; "
            f"ask its team, then send a few first: add --canary 5 (the rest go only if those are applied)"
        )
    print(f"  still failing:   {report[STILL_FAILING]}")
    for reason in report["reasons"][:MAX_LISTED]:
        print(f"    {reason['count']} x {reason['stage']}: {reason['reason']}")
    if any(reason["stage"] in ("decode", "contract") for reason in report["reasons"]):
        print(
            "    a contract failure fails again byte for byte: have the producer resend it corrected (the dead "
            "letter then closes itself), or fix it: flowfleet dlq repair ID --patch '[…]' --reason '…'"
        )
    return 0


def _run_replay(args: argparse.Namespace, settings: Settings, run: Callable[[Replayer], ReplayReport]) -> int:
    with archive_engine(settings) as engine:
        publisher, close = open_publisher(settings)
        progress = progress_bar if sys.stderr.isatty() and not args.json else None
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
    print_report(args, report)
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


def dlq_repair(args: argparse.Namespace, settings: Settings) -> int:
    patch = _read_patch(args.patch)
    with archive_engine(settings) as engine:
        with engine.connect() as connection:
            record = get_dead_letter(connection, args.id)
        if record is None:
            raise CommandError(f"no dead letter #{args.id}")
        if record["status"] != OPEN:
            raise CommandError(
                f"dead letter #{args.id} is {record['status']}, not open"
                + (f": repair its newest copy, #{record['replayed_as'][-1]}" if record["replayed_as"] else "")
            )
        if record["stage"] == DELIVERY:
            return repair_delivery(engine, args, patch)
        try:
            repaired = repair(record, patch, REGISTRY)
        except RepairRefused as error:
            detail = f" (fields: {', '.join(error.field_paths)})" if error.field_paths else ""
            raise CommandError(f"repair refused, nothing was sent: {shown(error.reason)}{detail}") from None
        if args.dry_run:
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
                "reason": None if verdict.reason is None else shown(verdict.reason),
                "dedup_key": repaired.dedup_key,
                "data": masked(repaired.data, args.unmask),
            }
            if args.json:
                print_json(result)
            else:
                print(f"dry run: the edit passes contract {repaired.contract} v{repaired.version}; nothing was sent")
                print(f"  dedup key unchanged: {repaired.dedup_key}")
                print(f"  today's checks: {verdict.verdict}" + (f" ({result['reason']})" if verdict.reason else ""))
                print(f"  edited data:\n{dump_json(result['data'])}")
            return 0
    return _run_replay(
        args,
        settings,
        lambda replayer: send_repaired(
            replayer, args.id, repaired, patch, actor=actor_of(args), reason=args.reason, wait=args.wait
        ),
    )


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
