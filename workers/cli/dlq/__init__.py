"""`flowfleet dlq …`: the on-call engineer's dead-letter commands, one module per kind of command.

Reads (list, groups, show, export, actions) mask personal data unless --unmask and never change the
schema; writes (replay, repair, discard, restore, purge) take --reason, have --dry-run, and are
recorded as actions with the operator's name (--actor, else FLOWFLEET_OPERATOR, else the OS user).
Every command refuses to run on an archive whose schema is not the one this code knows.
"""

from __future__ import annotations

from workers.cli.command import Subparsers
from workers.cli.dlq import reads, replay, writes


def register(sub: Subparsers) -> None:
    """The `dlq` command and its actions, each parser naming the function that runs it."""
    dlq = sub.add_parser("dlq", help="triage, replay, repair, discard and export dead letters")
    actions = dlq.add_subparsers(dest="action", required=True)
    for kind in (reads, replay, writes):
        kind.register(actions)
