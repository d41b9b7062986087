"""`dlq list|groups|show|export|actions`: read the archive and the audit log, personal data masked unless --unmask."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.dlq.archive import archive_engine, masked
from workers.cli.dlq.arguments import actor_of, filters, read_status, selection
from workers.cli.dlq.render import counts_text
from workers.cli.output import dump_json, print_json
from workers.deadletters.decision import suggest
from workers.deadletters.export import audit_export, export_line, readable
from workers.observability.masking import mask, mask_text
from workers.ownership import Owner
from workers.ownership import load as load_ownership
from workers.settings import Settings
from workers.store.archive.actions import get_action, list_actions
from workers.store.archive.parking import parked_list
from workers.store.archive.records import dead_letter_groups, get_dead_letter, iter_dead_letters, list_dead_letters
from workers.store.archive.replays import action_replays, outcome_counts

RUNBOOKS = "runbooks"


def register(actions: Subparsers) -> None:
    listing = actions.add_parser("list", help="dead letters matching a filter, newest first")
    filters(listing, status=True)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--parked", action="store_true", help="the events parked behind dead letters they depend on, oldest first"
    )
    runs(listing, dlq_list)

    groups = actions.add_parser("groups", help="dead letters grouped by failure fingerprint")
    filters(groups, status=True)
    groups.add_argument("--json", action="store_true")
    groups.add_argument("--unmask", action="store_true", help="show personal data in the sample reasons")
    runs(groups, dlq_groups)

    show = actions.add_parser("show", help="one dead letter: envelope, headers, error, history, replays")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.add_argument("--unmask", action="store_true", help="show personal data (use only when needed)")
    runs(show, dlq_show)

    export = actions.add_parser("export", help="dead letters as JSON Lines, for a ticket or an evidence pack")
    filters(export, status=True)
    export.add_argument("--output", help="file to write (default stdout)")
    export.add_argument("--unmask", action="store_true", help="export personal data (recorded as an action)")
    export.add_argument("--reason", help="why (recorded with an unmasked export)")
    export.add_argument("--actor", help="who (default FLOWFLEET_OPERATOR or the OS user)")
    export.add_argument("--json", action="store_true", help="accepted for uniformity: the output is always JSON")
    runs(export, dlq_export)

    history = actions.add_parser("actions", help="the audit log of operator actions, or one with its outcomes")
    history.add_argument("id", type=int, nargs="?")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--offset", type=int, default=0)
    history.add_argument("--json", action="store_true")
    runs(history, dlq_actions)


def dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    if args.parked:
        return _list_parked(args, settings)
    where = selection(args, status=read_status(args))
    with archive_engine(settings) as engine, engine.connect() as connection:
        rows, total = list_dead_letters(connection, where, limit=args.limit, offset=args.offset)
    return _print_page(
        args,
        "dead letter(s)",
        [mask(row) for row in rows],
        total,
        lambda row: (
            f"#{row['id']:<6} {row['last_failed_at']:%Y-%m-%d %H:%M:%S} {row['status']:<9} {row['flow']:<11} "
            f"{row['stage']:<8} {row['contract'] or '-':<18} from={row.get('producer') or '-':<12} "
            f"{keys_text(row.get('business_keys'))} attempts={row['attempts']:<3} "
            f"{row['error_type']}: {row['error_message'][:100]}"
        ),
    )


def keys_text(business_keys: Any) -> str:
    """`order_id=ORD-1 payment_id=P-1`, or `-` for a record whose keys could not be read."""
    if not isinstance(business_keys, dict) or not business_keys:
        return "-"
    return " ".join(f"{name}={value}" for name, value in sorted(business_keys.items()))


def _list_parked(args: argparse.Namespace, settings: Settings) -> int:
    with archive_engine(settings) as engine, engine.connect() as connection:
        rows = parked_list(connection, limit=args.limit)
    if args.json:
        print_json({"parked": rows})
        return 0
    print(f"{len(rows)} event(s) parked behind dead letters; each is released when its parent is applied")
    for row in rows:
        print(
            f"parked #{row['id']:<6} {row['parked_at']:%Y-%m-%d %H:%M:%S} behind #{row['parent_id']:<6} "
            f"{row['flow']:<11} {row['contract']:<18} {keys_text(row['business_keys'])}"
        )
    return 0


def _print_page(
    args: argparse.Namespace, what: str, rows: list[dict[str, Any]], total: int, line: Callable[[dict[str, Any]], str]
) -> int:
    """One page of a listing: as JSON with its total and offset, or a count line and one line per row."""
    if args.json:
        print_json({"total": total, "offset": args.offset, "items": rows})
        return 0
    print(f"{total} {what}; showing {len(rows)} from {args.offset}")
    for row in rows:
        print(line(row))
    return 0


def dlq_groups(args: argparse.Namespace, settings: Settings) -> int:
    where = selection(args, status=read_status(args))
    with archive_engine(settings) as engine, engine.connect() as connection:
        groups = dead_letter_groups(connection, where)
    for group in groups:
        group["runbooks"] = [f"{RUNBOOKS}/{flow}.md" for flow in group["flows"]]
        group["owner"] = group_owner(group).to_json()
        group.pop("sample_id", None)
        advice = suggest(group["stage"], group["error_type"], group["sample_reason"], group["fingerprint"])
        group |= {"decision": advice.decision, "why": advice.why, "next": advice.next}
        if not args.unmask:
            group["sample_reason"] = mask_text(group["sample_reason"])
    if args.json:
        print_json({"groups": groups, "total": sum(g["count"] for g in groups)})
        return 0
    print(f"{len(groups)} failure group(s), {sum(g['count'] for g in groups)} dead letter(s)")
    for group in groups:
        print(
            f"\n{group['fingerprint']}  {group['count']} x {group['stage']}/{group['error_type']}  "
            f"flows: {', '.join(group['flows'])}\n"
            f"  first {group['first_seen']:%Y-%m-%d %H:%M:%S}, last {group['last_seen']:%Y-%m-%d %H:%M:%S}\n"
            f"  e.g.: {group['sample_reason'][:200]}\n"
            f"  owner: {group_owner(group).text()}\n"
            f"  runbook: {', '.join(group['runbooks'])}\n"
            f"  decision: {group['decision']} ({group['why']})\n"
            f"  next: {group['next']}"
        )
    return 0


def group_owner(group: dict[str, Any]) -> Owner:
    """A failure group's owner, from its first flow (the integration team owns every flow alike)."""
    flow = group["flows"][0] if group["flows"] else ""
    return load_ownership().of_failure(flow=flow, stage=group["stage"], fingerprint=group["fingerprint"])


def dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    with archive_engine(settings) as engine, engine.connect() as connection:
        found = get_dead_letter(connection, args.id)
        waiting = parked_list(connection, parent_id=args.id)
    if found is None:
        raise CommandError(f"no dead letter #{args.id}")
    record = masked(readable(found), args.unmask) | {"parked": waiting}
    owner = load_ownership().of_failure(
        flow=record["flow"], stage=record["stage"], fingerprint=record.get("fingerprint"), system=record.get("system")
    )
    record["owner"] = owner.to_json()
    if args.json:
        print_json(record)
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
    print(f"{'owner':>16}: {owner.text()}")
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
    print(f"{'parked':>16}: {len(waiting)} event(s) parked behind this record (released when it is applied)")
    for row in waiting:
        print(f"  parked #{row['id']} {row['parked_at']} {row['contract']} {keys_text(row['business_keys'])}")
    return 0


def dlq_export(args: argparse.Namespace, settings: Settings) -> int:
    where = selection(args, status=read_status(args))
    count = 0
    with archive_engine(settings) as engine:
        with engine.connect() as connection:
            stream = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
            try:
                for record in iter_dead_letters(connection, where):
                    stream.write(export_line(record, unmask=args.unmask) + "\n")
                    count += 1
            finally:
                if stream is not sys.stdout:
                    stream.close()
        if args.unmask:
            with engine.begin() as connection:
                audit_export(
                    connection,
                    actor=actor_of(args),
                    reason=args.reason,
                    where=where,
                    unmask=True,
                    output=args.output or "-",
                    count=count,
                )
    print(f"exported {count} dead letter(s)" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def dlq_actions(args: argparse.Namespace, settings: Settings) -> int:
    with archive_engine(settings) as engine, engine.connect() as connection:
        if args.id is None:
            rows, total = list_actions_masked(connection, args)
            return _print_page(
                args,
                "action(s)",
                rows,
                total,
                lambda row: (
                    f"#{row['id']:<5} {row['started_at']:%Y-%m-%d %H:%M:%S} {row['kind']:<8} {row['status']:<11} "
                    f"by {row['actor']}: {row['reason'] or '-'}  {counts_text(row['counts'])}"
                ),
            )
        action = get_action(connection, args.id)
        if action is None:
            raise CommandError(f"no action #{args.id}")
        action = mask(_without_body(action))
        action["messages"] = action_replays(connection, args.id)
        action["outcomes"] = outcome_counts(connection, args.id)
    if args.json:
        print_json(action)
        return 0
    for key in ("id", "kind", "status", "actor", "reason", "started_at", "finished_at", "cutoff", "note"):
        print(f"{key:>12}: {action.get(key)}")
    print(f"{'selection':>12}: {json.dumps(action['selection'])}")
    print(f"{'options':>12}: {json.dumps(action['options'])}")
    print(f"{'counts':>12}: {counts_text(action['counts'])}")
    print(f"{'outcomes':>12}: {counts_text(action['outcomes'])}")
    for row in action["messages"][:200]:
        became = f" -> #{row['new_dead_letter_id']}" if row["new_dead_letter_id"] else ""
        print(f"  #{row['dead_letter_id']:<6} {row['flow']:<11} {row['outcome']}{became}")
    return 0


def list_actions_masked(connection: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    rows, total = list_actions(connection, limit=args.limit, offset=args.offset)
    return [mask(_without_body(row)) for row in rows], total


def _without_body(action: dict[str, Any]) -> dict[str, Any]:
    """An action as shown: a repair's edited body is in `dlq show`, masked, not here."""
    options = dict(action.get("options") or {})
    if "body" in options:
        options["body"] = "(the edited envelope: see `flowfleet dlq show`)"
    return action | {"options": options}
