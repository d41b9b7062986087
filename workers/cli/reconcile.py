"""`flowfleet reconcile`: the settlement-mismatch report, effects applied here that a downstream system never confirmed.

Per system, each delivery recorded since `--since` (default 24 h) that is pending past the system's
objective, dead-lettered, or discarded, with the event's business keys, in words finance can read
("refund REF-17 of payment PAY-9 recorded here, not posted to the ERP: dead letter 812"). The exit
code is 1 when there is a mismatch and 0 otherwise, for a scheduled check. It only reads.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from workers.cli.command import Subparsers, runs
from workers.cli.dlq.archive import archive_engine
from workers.cli.dlq.arguments import parse_moment
from workers.cli.downstream import SYSTEMS_HELP, known_system
from workers.cli.output import dump_json
from workers.observability.masking import mask, mask_text
from workers.ownership import load as load_ownership
from workers.settings import DOWNSTREAM_SYSTEMS, Settings
from workers.store.outbox.unconfirmed import OVERDUE, Unconfirmed, unconfirmed

#: What the effect of each contract is, in words, from its business keys.
EFFECTS = {
    "order.created": "order {order_id} reserved here",
    "order.cancelled": "order {order_id} cancelled here",
    "inventory.adjusted": "stock of {sku} at {location} adjusted here",
    "inventory.counted": "stock of {sku} at {location} counted here",
    "payment.authorized": "payment {payment_id} authorized here",
    "payment.captured": "capture {capture_id} of payment {payment_id} taken here",
    "payment.refunded": "refund {refund_id} of payment {payment_id} recorded here",
    "payment.failed": "failed payment {payment_id} recorded here",
    "shipment.dispatched": "shipment {shipment_id} dispatched here",
    "shipment.delivered": "shipment {shipment_id} delivered here",
    "return.requested": "return {rma_id} of order {order_id} opened here",
    "return.received": "return {rma_id} of order {order_id} received here",
    "price.changed": "price of {sku} in {currency} changed here",
    "product.updated": "product {sku} updated here",
}
#: Where the effect was to go.
DESTINATIONS = {
    "erp": "not posted to the ERP",
    "channels": "not sent to the sales channels",
    "notify": "not sent to the customer notifications",
    "payments": "not sent to the payment gateway",
}
TEXT_LIMIT = 50


def register(sub: Subparsers) -> None:
    """The `reconcile` command."""
    parser = runs(
        sub.add_parser("reconcile", help="effects applied here whose delivery is not confirmed (exit 1 if any)"),
        reconcile,
    )
    parser.add_argument(
        "--system", action="append", default=[], metavar=SYSTEMS_HELP, help="only this system (repeatable)"
    )
    parser.add_argument("--since", default="24h", help="recorded at or after: ISO date/time, or e.g. 24h, 7d")
    parser.add_argument("--json", action="store_true")


def describe(item: Unconfirmed, *, objective_seconds: int, now: datetime) -> str:
    """One mismatch in words."""
    try:
        effect = EFFECTS[item.contract].format_map(item.business_keys)
    except (KeyError, ValueError):
        effect = f"{item.contract} {item.dedup_key} applied here"
    where = DESTINATIONS.get(item.system, f"not sent to {item.system}")
    if item.reason == OVERDUE:
        age = int((now - item.created_at).total_seconds() // 60)
        why = f"pending for {age} min (objective {objective_seconds // 60} min), {item.attempts} attempt(s)"
        if item.last_error:
            why += f", last error: {mask_text(item.last_error[:200])}"
    elif item.reason == "dead_lettered":
        why = f"dead letter {item.dead_letter_id}" if item.dead_letter_id else "dead-lettered"
    else:
        why = f"discarded (dead letter {item.dead_letter_id})" if item.dead_letter_id else "discarded"
        if item.discarded_by:
            why += f" by {item.discarded_by}: {item.discard_reason or 'no reason given'}"
    return f"{effect}, {where}: {why}"


def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    systems = [known_system(system) for system in args.system] or list(DOWNSTREAM_SYSTEMS)
    objectives = {system: settings.delivery_objective(system) for system in DOWNSTREAM_SYSTEMS}
    since = parse_moment(args.since)
    now = datetime.now(UTC)
    with archive_engine(settings) as engine, engine.connect() as connection:
        found = unconfirmed(connection, now=now, since=since, objectives=objectives, systems=systems)
    by_system: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in found:
        objective = int(objectives.get(item.system, max(objectives.values())).total_seconds())
        row = mask(asdict(item)) | {"text": mask_text(describe(item, objective_seconds=objective, now=now))}
        by_system[item.system].append(row)
    ownership = load_ownership()
    if args.json:
        owners = {s: owner.to_json() for s in systems if (owner := ownership.of("systems", s))}
        report = {
            "at": now,
            "since": since,
            "mismatches": len(found),
            "systems": {s: by_system[s] for s in systems},
            "owners": owners,
        }
        print(dump_json(report))
        return 1 if found else 0
    print(f"reconciliation of deliveries recorded since {since:%Y-%m-%d %H:%M} UTC: {len(found)} mismatch(es)")
    for system in systems:
        rows = by_system[system]
        if not rows:
            print(f"{system}: every effect confirmed (or superseded by a newer one)")
            continue
        print(f"{system}: {len(rows)} effect(s) applied here and not confirmed")
        if owner := ownership.of("systems", system):
            print(f"  owner: {owner.text()}")
        for row in rows[:TEXT_LIMIT]:
            print(f"  #{row['id']} {row['text']}")
        if len(rows) > TEXT_LIMIT:
            print(f"  … and {len(rows) - TEXT_LIMIT} more (--json lists all)")
    return 1 if found else 0
