"""`dlq replay|repair` for dead letters of stage `delivery`: their requests go back to the outbox, not the broker."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from sqlalchemy import Connection, Engine, select

from workers.cli.command import CommandError
from workers.cli.dlq.archive import archive_engine, masked
from workers.cli.dlq.arguments import actor_of
from workers.cli.output import dump_json, print_json
from workers.deadletters import redelivery
from workers.deadletters.decision import refusal
from workers.settings import Settings
from workers.store.archive.records import DeadLetterFilter
from workers.store.tables import dead_letters

#: The stage of a dead letter whose event was applied and whose request a downstream system refused.
DELIVERY = redelivery.STAGE


def replay_deliveries(args: argparse.Namespace, settings: Settings, where: DeadLetterFilter) -> bool:
    """Send the selection's delivery dead letters again, each with its own Idempotency-Key (or, with
    --dry-run, say so). Returns True when the selection was only about deliveries (`--stage delivery`)."""
    with archive_engine(settings) as engine, engine.begin() as connection:
        ids = redelivery.delivery_dead_letters(connection, where)
        if args.dry_run:
            for item in redelivery.preview(connection, ids):
                print(
                    f"dry run: #{item['dead_letter_id']} would be sent again to {item['system']} "
                    f"POST {item['path']} with Idempotency-Key {item['idempotency_key']}"
                )
            for system, count in sorted(refused_for_good(connection, ids).items()):
                print(
                    f"dry run: {count} of them were refused for good by {system}: they will be refused again unless "
                    f"{system} changed; ask its team, then send one first (flowfleet dlq replay ID --reason '…')"
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


def refused_for_good(connection: Connection, ids: list[int]) -> Counter[str]:
    """How many of these dead letters each downstream system refused with a permanent answer."""
    found: Counter[str] = Counter()
    if not ids:
        return found
    for message in connection.execute(select(dead_letters.c.error_message).where(dead_letters.c.id.in_(ids))).scalars():
        answer = refusal(message)
        if answer is not None and answer.permanent:
            found[answer.system] += 1
    return found


def repair_delivery(engine: Engine, args: argparse.Namespace, patch: Any) -> int:
    """A delivery dead letter's patch applies to its request body (paths from the body's root)."""
    try:
        with engine.begin() as connection:
            body = redelivery.repair_delivery(
                connection, args.id, patch, actor=actor_of(args), reason=args.reason, dry_run=args.dry_run
            )
    except ValueError as error:
        raise CommandError(f"repair refused, nothing was sent: {error}") from None
    if args.json:
        print_json({"dry_run": args.dry_run, "dead_letter_id": args.id, "body": masked(body, args.unmask)})
    elif args.dry_run:
        print(f"dry run: #{args.id}'s request would be sent again as:\n{dump_json(masked(body, args.unmask))}")
    else:
        print(f"#{args.id}'s patched request is back in the outbox, with its own Idempotency-Key")
    return 0
