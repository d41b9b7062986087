"""`flowfleet demo`: the embedded demo (in-memory broker, SQLite, in-process downstream fakes)."""

from __future__ import annotations

import argparse

from workers.cli.command import Subparsers, runs
from workers.settings import Settings


def register(sub: Subparsers) -> None:
    runs(sub.add_parser("demo", help="run a realistic stream of orders through the embedded pipeline"), demo)


def demo(_args: argparse.Namespace, _settings: Settings) -> int:
    from workers.demo import embedded  # noqa: PLC0415  # only the demo needs the demo's imports

    embedded.run()
    return 0
