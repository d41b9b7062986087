"""Every command the CLI parses is registered by its group's module, with the handler that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from workers.cli import main as cli_main
from workers.cli.command import Subparsers, runs
from workers.settings import Settings


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser.get_default("handler")
        return
    for name, child in subparsers[0].choices.items():
        yield from _leaves(child, (*path, name))


def test_every_command_names_the_handler_that_runs_it() -> None:
    leaves = dict(_leaves(cli_main.parser()))

    assert {path for path, handler in leaves.items() if not callable(handler)} == set()
    assert {path[0] for path in leaves} == {
        "demo",
        "worker",
        "topology",
        "publish",
        "contracts",
        "dlq",
        "downstream",
        "reconcile",
        "report",
        "console",
        "exporter",
        "db",
    }
    assert ("dlq", "replay") in leaves and ("topology", "check") in leaves and ("db", "upgrade") in leaves


def test_a_new_group_is_one_module_with_register_and_one_line_in_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Settings] = []

    def hello(_args: argparse.Namespace, settings: Settings) -> int:
        received.append(settings)
        return 0

    class Hello:
        @staticmethod
        def register(sub: Subparsers) -> None:
            runs(sub.add_parser("hello"), hello)

    monkeypatch.setattr(cli_main, "GROUPS", (*cli_main.GROUPS, Hello))

    assert cli_main.main(["hello"]) == 0
    assert len(received) == 1 and isinstance(received[0], Settings), "the settings are built once and passed in"
