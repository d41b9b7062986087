"""`flowfleet db upgrade`: migrate the database schema to the latest revision."""

from __future__ import annotations

import argparse

from workers.cli.command import Subparsers, runs
from workers.settings import Settings
from workers.store.db import make_engine, migrate


def register(sub: Subparsers) -> None:
    db = sub.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="action", required=True)
    runs(actions.add_parser("upgrade", help="migrate the schema to the latest revision"), upgrade)


def upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.database_url.get_secret_value())
    migrate(engine)
    engine.dispose()
    print("schema is at the latest revision")
    return 0
