"""What every command group shares: a handler's signature, how a parser names its handler, how a command fails.

A command group is a module with `register(subparsers)`: it adds its parsers and names, on each, the
handler that runs it. `workers.cli.main` lists the groups, builds the settings once per invocation and
passes them to the handler, which reads no settings of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from workers.settings import Settings

#: What runs a command: the parsed arguments and this invocation's settings in, the exit code out.
Handler = Callable[[argparse.Namespace, Settings], int]
#: What `register` is given: the parent parser's `add_subparsers()`.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # generic only in typeshed


class CommandError(Exception):
    """A command could not do its job; the message says why, in plain words."""


def runs(parser: argparse.ArgumentParser, handler: Handler) -> argparse.ArgumentParser:
    """Name the handler that runs this parser's command; returns the parser for more arguments."""
    parser.set_defaults(handler=handler)
    return parser
