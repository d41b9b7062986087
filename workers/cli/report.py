"""`flowfleet report`: the weekly operational review (markdown, or `--json`), for the owners' weekly meeting.

Per flow, failures by stage and group, time to recovery, manual interventions, the delivery backlog and
reconciliation mismatches per system, and the open groups no owner has decided on. It only reads.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.dlq.archive import archive_engine
from workers.cli.dlq.arguments import parse_moment
from workers.cli.dlq.reads import group_owner
from workers.cli.output import dump_json
from workers.deadletters.weekly_review import as_json, as_markdown
from workers.ownership import load as load_ownership
from workers.settings import DOWNSTREAM_SYSTEMS, Settings
from workers.store.archive.review import review


def register(sub: Subparsers) -> None:
    """The `report` command."""
    parser = runs(sub.add_parser("report", help="the weekly operational review (markdown, or --json)"), report)
    parser.add_argument("--since", default="7d", help="the window's start: ISO date/time, or e.g. 7d, 24h")
    parser.add_argument("--json", action="store_true")


def report(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    since = parse_moment(args.since, now=now)
    if since >= now:
        raise CommandError(f"--since {args.since!r} is not in the past")
    objectives = {system: settings.delivery_objective(system) for system in DOWNSTREAM_SYSTEMS}
    with archive_engine(settings) as engine, engine.connect() as connection:
        found = review(connection, since=since, until=now, objectives=objectives)
    ownership = load_ownership()
    owners = {group["fingerprint"]: group_owner(group) for group in found.undecided}
    system_owners = {s: owner for s in found.backlog if (owner := ownership.of("systems", s))}
    if args.json:
        print(dump_json(as_json(found, owners, system_owners)))
    else:
        print(as_markdown(found, owners, system_owners), end="")
    return 0
