"""`flowfleet worker`: its arguments; the process itself is in workers.cli.worker_process, imported only to run."""

from __future__ import annotations

import argparse

from workers.cli.command import Subparsers, runs
from workers.settings import ConfigurationError, Settings


def register(sub: Subparsers) -> None:
    worker = runs(
        sub.add_parser("worker", help="run the flows' actors, the delivery relay and the dead-letter drain"), run
    )
    worker.add_argument("--flow", action="append", help="only these flows (repeatable); default all")
    worker.add_argument("--threads", type=int, help="worker threads (default FLOWFLEET_WORKER_THREADS)")
    worker.add_argument(
        "--processes",
        type=int,
        help="worker processes under one parent, each with --threads (default FLOWFLEET_WORKER_PROCESSES, 1)",
    )
    worker.add_argument("--no-drain", action="store_true", help="do not drain dead-letter queues into the archive")
    relaying = worker.add_mutually_exclusive_group()
    relaying.add_argument("--no-relay", action="store_true", help="do not send the outbox's deliveries")
    relaying.add_argument(
        "--relay-only", action="store_true", help="only send the outbox's deliveries (no flows, no drain): for sizing"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    processes = args.processes or settings.worker_processes
    if processes < 1:
        raise ConfigurationError("--processes must be at least 1")
    if processes > 1:
        from workers.cli.worker_processes import supervise  # noqa: PLC0415  # keeps the CLI's start-up light

        return supervise(settings, processes, _child_arguments(args))
    from workers.cli.worker_process import run_worker  # noqa: PLC0415  # keeps the CLI's start-up light

    return run_worker(
        settings,
        flows=args.flow,
        threads=args.threads,
        drain=not args.no_drain,
        relay=not args.no_relay,
        relay_only=args.relay_only,
    )


def _child_arguments(args: argparse.Namespace) -> list[str]:
    """The switches each child of `--processes` runs with: the parent's, one process each."""
    child = [f"--flow={flow}" for flow in args.flow or ()]
    if args.threads:
        child.append(f"--threads={args.threads}")
    child += [switch for switch, on in (("--no-drain", args.no_drain), ("--no-relay", args.no_relay)) if on]
    if args.relay_only:
        child.append("--relay-only")
    return [*child, "--processes=1"]
