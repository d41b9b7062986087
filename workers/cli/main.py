"""The `flowfleet` command line: demo, worker, exporter, topology, publish, contracts, dlq, db."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workers.cli import commands, dlq


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="flowfleet", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="run a realistic stream of orders through the embedded pipeline")

    worker = sub.add_parser("worker", help="run the flows' actors, the delivery relay and the dead-letter drain")
    worker.add_argument("--flow", action="append", help="only these flows (repeatable); default all")
    worker.add_argument("--threads", type=int, help="worker threads (default FLOWFLEET_WORKER_THREADS)")
    worker.add_argument("--no-drain", action="store_true", help="do not drain dead-letter queues into the archive")
    relaying = worker.add_mutually_exclusive_group()
    relaying.add_argument("--no-relay", action="store_true", help="do not send the outbox's deliveries")
    relaying.add_argument(
        "--relay-only", action="store_true", help="only send the outbox's deliveries (no flows, no drain): for sizing"
    )

    topo = sub.add_parser("topology", help="declare, export or check the broker topology")
    topo_sub = topo.add_subparsers(dest="action", required=True)
    apply = topo_sub.add_parser("apply", help="declare exchange, queues and bindings (idempotent)")
    apply.add_argument("--dry-run", action="store_true", help="print what would be declared")
    topo_sub.add_parser("export", help="print RabbitMQ definitions JSON")
    check = topo_sub.add_parser("check", help="report drift between the broker and the expected topology")
    check.add_argument("--json", action="store_true")

    publish = sub.add_parser("publish", help="publish envelopes from a JSON Lines file, with confirms")
    publish.add_argument("file", help="JSON Lines file of envelopes ('-' for stdin)")
    publish.add_argument("--dry-run", action="store_true", help="validate the lines, publish nothing")
    publish.add_argument("--json", action="store_true")

    contracts = sub.add_parser("contracts", help="list contracts or print their JSON Schemas")
    contracts_sub = contracts.add_subparsers(dest="action", required=True)
    listing = contracts_sub.add_parser("list")
    listing.add_argument("--json", action="store_true")
    schema = contracts_sub.add_parser("schema")
    schema.add_argument("name")
    schema.add_argument("--version", type=int)

    dlq.add_parsers(sub)

    exporter = sub.add_parser("exporter", help="serve queue depth and open dead letters as Prometheus metrics")
    exporter.add_argument("--port", type=int, help="port to serve on (default FLOWFLEET_METRICS_PORT)")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="action", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to the latest revision")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return commands.run(args)
    except commands.CommandError as error:
        print(f"flowfleet: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
