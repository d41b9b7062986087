"""`flowfleet exporter`: its arguments; the process itself is in workers.cli.exporter_process, imported only to run."""

from __future__ import annotations

import argparse

from workers.cli.command import Subparsers, runs
from workers.settings import Settings


def register(sub: Subparsers) -> None:
    exporter = runs(
        sub.add_parser("exporter", help="serve queue depth and open dead letters as Prometheus metrics"), run
    )
    exporter.add_argument("--port", type=int, help="port to serve on (default FLOWFLEET_METRICS_PORT)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.cli.exporter_process import run_exporter  # noqa: PLC0415  # keeps the CLI's start-up light

    return run_exporter(settings, port=args.port)
