"""`flowfleet contracts list|schema`: the published contracts and their JSON Schemas, for upstream teams."""

from __future__ import annotations

import argparse

from contracts.errors import RejectedMessage
from contracts.published import REGISTRY
from contracts.schema import contract_schema
from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.output import print_json
from workers.settings import Settings


def register(sub: Subparsers) -> None:
    contracts = sub.add_parser("contracts", help="list contracts or print their JSON Schemas")
    actions = contracts.add_subparsers(dest="action", required=True)
    runs(actions.add_parser("list"), listing).add_argument("--json", action="store_true")
    schema_parser = runs(actions.add_parser("schema"), schema)
    schema_parser.add_argument("name")
    schema_parser.add_argument("--version", type=int)


def listing(args: argparse.Namespace, _settings: Settings) -> int:
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
        print_json(rows)
    else:
        for row in rows:
            versions = ",".join(f"v{v}" for v in row["versions"])
            print(f"{row['contract']:<24} flow={row['flow']:<12} {versions:<8} {row['summary']}")
    return 0


def schema(args: argparse.Namespace, _settings: Settings) -> int:
    try:
        contract = REGISTRY.get(args.name)
        print_json(contract_schema(contract, args.version))
    except RejectedMessage as error:
        raise CommandError(error.reason) from None
    except KeyError as error:
        raise CommandError(str(error.args[0])) from None
    return 0
