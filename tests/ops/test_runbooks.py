"""Runbooks cannot rot: fixed headings, every alert's runbook_url resolves, every `flowfleet` command in them works.

Each `flowfleet …` line in a ```sh block must parse with the real CLI parser, naming each flag in full
(argparse would accept a prefix); a `flowfleet …` in the prose may only name commands and flags the CLI
has. The read-only ones run against a migrated SQLite archive with three dead letters and must succeed
(a `dlq show` of an example id that is not there may say so, with the CLI's documented exit code 2);
the dry runs of writes run too, as they promise to change nothing. Every runbook gives a "Recover, in
order" block, and every console link in a runbook is a page the console serves.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.observability import ROOT, RUNBOOKS, alert_rules, runbook_target
from workers.cli.main import main, parser
from workers.console import actions, downstream, pages, replays

HEADINGS = ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Escalation and owner"]
#: Commands that only read (the archive, the contracts, the topology): they run against the test archive.
READ_ONLY = {
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "groups"),
    ("dlq", "actions"),
    ("dlq", "export"),
    ("contracts", "list"),
    ("contracts", "schema"),
    ("topology", "export"),
    ("downstream", "status"),
}
#: Commands of one word that only read.
READ_ONLY_ALONE = {"reconcile"}
#: Writes that promise to change nothing with --dry-run: those dry runs run too.
DRY_RUNS = {
    ("topology", "apply"),
    ("dlq", "replay"),
    ("dlq", "discard"),
    ("downstream", "pause"),
    ("downstream", "resume"),
}
#: What a read of an example id that the test archive does not hold answers (exit code 2).
NOT_THERE = {("dlq", "show"): "no dead letter", ("dlq", "actions"): "no action"}


@dataclass(frozen=True)
class Command:
    runbook: Path
    line: int
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.runbook.relative_to(ROOT)}:{self.line}: {shlex.join(self.argv)}"


def runbooks() -> list[Path]:
    return sorted(RUNBOOKS.rglob("*.md"))


def slug(heading: str) -> str:
    """The anchor GitHub and most renderers give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lstrip("#").strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """Each logical line of the ```sh blocks (backslash continuations joined), with its line number."""
    lines: list[tuple[int, str]] = []
    inside = False
    pending = ""
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            inside = line.strip() == "```sh"
            continue
        if not inside:
            continue
        if not pending:
            start = number
        pending += line.rstrip("\\") + " "
        if not line.endswith("\\"):
            lines.append((start, pending.strip()))
            pending = ""
    return lines


def flowfleet_commands() -> list[Command]:
    """Every `flowfleet …` command in a ```sh block of any runbook (environment assignments and pipes dropped)."""
    found: list[Command] = []
    for path in runbooks():
        for number, line in shell_lines(path):
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|;&")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = list(lexer)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words.pop(0)
            if not words or words[0] != "flowfleet":
                continue
            argv = []
            for word in words[1:]:
                if set(word) <= set("|;&"):
                    break
                argv.append(word)
            found.append(Command(path, number, argv))
    return found


COMMANDS = flowfleet_commands()


def test_there_is_a_runbook_per_flow_and_per_alert() -> None:
    flows = {"orders", "inventory", "payments", "fulfillment", "returns", "catalog"}
    runbook_paths = {str(runbook_target(rule)[0].relative_to(ROOT)) for rule in alert_rules()}

    assert {f"{flow}.md" for flow in flows} <= {path.name for path in RUNBOOKS.glob("*.md")}
    assert len(runbook_paths) == len(alert_rules()), "each alert has a runbook of its own"
    assert {str(path.relative_to(ROOT)) for path in (RUNBOOKS / "alerts").glob("*.md")} == runbook_paths


@pytest.mark.parametrize("path", runbooks(), ids=lambda path: str(path.relative_to(RUNBOOKS)))
def test_every_runbook_has_the_five_headings_in_order(path: Path) -> None:
    headings = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]

    assert headings == HEADINGS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_runbook_url_resolves_to_a_file_and_a_heading(rule: dict[str, object]) -> None:
    target, anchor = runbook_target(rule)
    file = target.relative_to(ROOT)

    assert target.is_file(), f"{rule['alert']}: {file} does not exist"
    assert anchor in anchors(target), f"{rule['alert']}: {file} has no heading #{anchor}"
    assert target.read_text(encoding="utf-8").startswith(f"# Alert: {rule['alert']}\n")


@pytest.mark.parametrize("path", runbooks(), ids=lambda path: str(path.relative_to(RUNBOOKS)))
def test_every_relative_link_in_a_runbook_resolves(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.is_file(), f"{path.name}: link to {target} is broken"
        if anchor:
            assert anchor in anchors(resolved), f"{path.name}: {target} has no such heading"


def test_the_runbooks_hold_flowfleet_commands_to_check() -> None:
    assert len(COMMANDS) > 20
    assert {cmd.runbook.parent.name for cmd in COMMANDS} == {"runbooks", "alerts"}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_runbook_command_parses_with_the_real_cli(command: Command) -> None:
    try:
        parser().parse_args(command.argv)
    except SystemExit as exit_:
        pytest.fail(f"{command} does not parse (exit {exit_.code})")


def table_sizes(url: str) -> dict[str, int]:
    """Rows per table of the SQLite archive at `url`."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def read_only(command: Command) -> bool:
    verb = tuple(command.argv[:2])
    alone = command.argv[0] in READ_ONLY_ALONE
    return alone or verb in READ_ONLY or (verb in DRY_RUNS and "--dry-run" in command.argv)


READ_ONLY_COMMANDS = [cmd for cmd in COMMANDS if read_only(cmd)]


def test_some_runbook_commands_are_run_for_real() -> None:
    assert {tuple(cmd.argv[:2]) for cmd in READ_ONLY_COMMANDS} >= {("dlq", "list"), ("dlq", "show")}
    assert {("downstream", "status"), ("downstream", "pause")} <= {tuple(cmd.argv[:2]) for cmd in READ_ONLY_COMMANDS}
    assert any(cmd.argv[0] == "reconcile" for cmd in READ_ONLY_COMMANDS)


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=str)
def test_every_read_only_runbook_command_runs_against_an_archive(
    command: Command, archive_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWFLEET_DATABASE_URL", archive_url)
    before = table_sizes(archive_url)

    code = main(command.argv)

    err = capsys.readouterr().err
    missing = NOT_THERE.get((command.argv[0], command.argv[1])) if len(command.argv) > 1 else None
    if missing and code == 2:
        assert re.fullmatch(rf"flowfleet: {missing} #\d+\n", err), f"{command}: {err}"
    else:
        assert code == 0, f"{command} exited {code}: {err}"
    if command.argv[:2] != ["dlq", "export"]:  # an export is audited: it records who took the data
        assert table_sizes(archive_url) == before, f"{command} changed the archive"


def leaf(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser the words of `argv` lead to, and the words of the command path that led there."""
    current = parser()
    path: list[str] = []
    for word in argv:
        choices = [
            action.choices
            for action in current._actions  # argparse keeps its subcommands only here
            if isinstance(action, argparse._SubParsersAction)
        ]
        if not choices or word not in choices[0]:
            break
        current = choices[0][word]
        path.append(word)
    return current, path


def unknown_flags(argv: list[str]) -> list[str]:
    """The flags of `argv` that its command does not have under exactly that name."""
    command, _ = leaf(argv)
    known = {option for action in command._actions for option in action.option_strings}
    flags = [word.split("=", 1)[0] for word in argv if re.fullmatch(r"--?[a-z][\w-]*(=.*)?", word)]
    return [flag for flag in flags if flag not in known]


def prose_commands() -> list[Command]:
    """Every `flowfleet …` written inline (in backticks) in a runbook's prose."""
    found: list[Command] = []
    for path in runbooks():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for span in re.findall(r"`(flowfleet [^`]+)`", line):
                found.append(Command(path, number, span.split()[1:]))
    return found


PROSE_COMMANDS = prose_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_runbook_command_names_its_flags_in_full(command: Command) -> None:
    assert unknown_flags(command.argv) == [], f"{command}: the CLI has no such flag"


def test_a_misspelt_or_abbreviated_flag_or_command_is_caught() -> None:
    assert unknown_flags(["dlq", "replay", "--group", "x", "--dry"]) == ["--dry"]
    assert unknown_flags(["dlq", "list", "--since", "1h", "--parkd"]) == ["--parkd"]
    assert leaf(["dlq", "retry", "--group", "x"])[1] == ["dlq"]


def test_the_runbooks_prose_names_flowfleet_commands_too() -> None:
    assert len(PROSE_COMMANDS) > 20


@pytest.mark.parametrize("command", PROSE_COMMANDS, ids=str)
def test_every_command_in_a_runbooks_prose_is_one_the_cli_has(command: Command) -> None:
    words = [word for word in command.argv if re.fullmatch(r"[a-z][a-z-]*", word)]
    _, path = leaf(words)
    named = list(itertools.takewhile(lambda word: re.fullmatch(r"[a-z][a-z-]*", word), command.argv))

    assert path == named[: len(path)] and len(path) >= 1, f"{command}: no such command"
    if len(named) > len(path):
        sub, _ = leaf(path)
        assert not sub._subparsers, f"{command}: {path} has no subcommand {named[len(path)]}"
    assert unknown_flags(command.argv) == [], f"{command}: the CLI has no such flag"


def recovery_block(path: Path) -> list[str]:
    """The `flowfleet` lines of the ```sh block after the runbook's "**Recover, in order**"."""
    text = path.read_text(encoding="utf-8")
    if "**Recover, in order" not in text:
        return []
    after = text[text.index("**Recover, in order") :]
    block = after[after.index("```sh\n") + len("```sh\n") :]
    return [line for line in block[: block.index("```")].splitlines() if line.startswith("flowfleet ")]


@pytest.mark.parametrize("path", runbooks(), ids=lambda path: str(path.relative_to(RUNBOOKS)))
def test_every_runbook_says_how_to_recover_in_a_few_commands_in_order(path: Path) -> None:
    commands = recovery_block(path)

    assert 1 <= len(commands) <= 6, f"{path.name}: a 'Recover, in order' block of 1 to 6 flowfleet commands"


#: How a runbook links the console: the base set once as Prometheus's external label `console_url`.
CONSOLE_LINK = re.compile(r"\{console_url\}(/[^\s`)\"']*)")
#: What a link's placeholders stand for, to match it against the console's routes.
PLACEHOLDERS = {"<fingerprint>": "3f2a9c1e0b7d4a65", "<id>": "42", "<system>": "erp", "<order_id>": "ORD-1"}
CONSOLE_ROUTES = [*pages.ROUTES, *replays.ROUTES, *actions.ROUTES, *downstream.ROUTES]


def console_links() -> list[tuple[Path, str]]:
    return [(path, link) for path in runbooks() for link in CONSOLE_LINK.findall(path.read_text(encoding="utf-8"))]


def test_the_alert_runbooks_link_the_console_in_their_diagnosis() -> None:
    for path in sorted((RUNBOOKS / "alerts").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        diagnosis = text[text.index("## Diagnosis") : text.index("## Mitigation")]
        assert CONSOLE_LINK.search(diagnosis), f"{path.name}: no console link in the diagnosis"


@pytest.mark.parametrize("link", console_links(), ids=lambda link: f"{link[0].name}:{link[1]}")
def test_every_console_link_in_a_runbook_is_a_page_the_console_serves(link: tuple[Path, str]) -> None:
    path, target = link
    for placeholder, value in PLACEHOLDERS.items():
        target = target.replace(placeholder, value)
    page = target.split("?", 1)[0]

    served = [route for route in CONSOLE_ROUTES if route.path_regex.fullmatch(page) and "GET" in (route.methods or ())]
    assert served, f"{path.name}: the console serves no page {page}"


def test_a_console_link_to_a_page_that_does_not_exist_is_caught() -> None:
    assert not [route for route in CONSOLE_ROUTES if route.path_regex.fullmatch("/group/3f2a9c1e0b7d4a65")]
    assert [route for route in CONSOLE_ROUTES if route.path_regex.fullmatch("/records/42")]
