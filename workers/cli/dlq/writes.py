"""`dlq discard|restore|purge`: audited status moves on dead letters, and the purge of closed ones."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from workers.cli.command import Subparsers, runs
from workers.cli.dlq.archive import archive_engine
from workers.cli.dlq.arguments import actor_of, filters, parse_moment, write_arguments, write_selection
from workers.cli.dlq.render import report_change
from workers.deadletters import redelivery
from workers.settings import Settings
from workers.store.archive.actions import DISCARD, RESTORE
from workers.store.archive.moves import audited_purge, purgeable
from workers.store.archive.records import DeadLetterFilter, list_dead_letters, matching_ids
from workers.store.archive.status import DISCARDED, OPEN
from workers.store.archive.status_changes import audited_move


def register(actions: Subparsers) -> None:
    discard = actions.add_parser("discard", help="suppress dead letters (kept, status discarded, restorable)")
    filters(discard, status=False)
    discard.add_argument("--all", action="store_true", help="every open dead letter")
    write_arguments(discard, reason_required=True)
    runs(discard, dlq_discard)

    restore = actions.add_parser("restore", help="reopen discarded dead letters")
    restore.add_argument("ids", type=int, nargs="+", metavar="ID")
    write_arguments(restore, reason_required=True)
    runs(restore, dlq_restore)

    purge = actions.add_parser("purge", help="delete resolved or discarded dead letters closed before a date")
    purge.add_argument("--resolved-before", required=True, metavar="DATE", help="ISO date or time, or e.g. 30d")
    write_arguments(purge, reason_required=True)
    runs(purge, dlq_purge)


def dlq_discard(args: argparse.Namespace, settings: Settings) -> int:
    where = write_selection(args)
    with archive_engine(settings) as engine:
        with engine.connect() as connection:
            ids = matching_ids(connection, where)
        if args.dry_run:
            return report_change(args, "would discard", ids, dry_run=True)
        with engine.begin() as connection:
            selection = replace(where, status=None).to_json()
            action_id, moved = _move(
                connection,
                args,
                kind=DISCARD,
                selection=selection,
                ids=ids,
                statuses=(OPEN, DISCARDED),
                event="discarded",
            )
            redelivery.suppress_discarded(connection, moved)  # a discarded delivery is never sent
    return report_change(args, "discarded", moved, action_id=action_id, skipped=sorted(set(ids) - set(moved)))


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
    return audited_move(
        connection,
        kind=kind,
        actor=actor_of(args),
        reason=args.reason,
        selection=selection,
        ids=ids,
        statuses=statuses,
        event=event,
    )


def dlq_restore(args: argparse.Namespace, settings: Settings) -> int:
    ids = sorted(set(args.ids))
    with archive_engine(settings) as engine:
        if args.dry_run:
            with engine.connect() as connection:
                found = list_dead_letters(
                    connection, DeadLetterFilter(ids=tuple(ids), status=DISCARDED), limit=len(ids)
                )
            would = sorted(int(row["id"]) for row in found[0])
            return report_change(args, "would restore", would, dry_run=True, skipped=sorted(set(ids) - set(would)))
        with engine.begin() as connection:
            action_id, moved = _move(
                connection,
                args,
                kind=RESTORE,
                selection={"ids": ids},
                ids=ids,
                statuses=(DISCARDED, OPEN),
                event="restored",
            )
            redelivery.hold_restored(connection, moved)
    return report_change(args, "restored", moved, action_id=action_id, skipped=sorted(set(ids) - set(moved)))


def dlq_purge(args: argparse.Namespace, settings: Settings) -> int:
    before = parse_moment(args.resolved_before)
    with archive_engine(settings) as engine:
        with engine.connect() as connection:
            doomed = purgeable(connection, before)
        ids = [int(row["id"]) for row in doomed]
        if args.dry_run:
            return report_change(args, "would purge", ids, dry_run=True)
        with engine.begin() as connection:
            action_id, removed = audited_purge(
                connection, doomed, before=before, actor=actor_of(args), reason=args.reason
            )
    return report_change(args, "purged", ids[:removed], action_id=action_id)
