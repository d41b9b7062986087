"""The Procfile is valid for honcho, and every process it starts is a command the real CLI accepts."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from workers.cli.main import parser

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"


def procfile_processes() -> dict[str, str]:
    """Process type -> command, read by honcho's own parser."""
    return dict(parse_procfile(PROCFILE.read_text(encoding="utf-8")).processes)


def test_honcho_check_accepts_the_procfile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "honcho", "check", "--procfile", str(PROCFILE), "--app-root", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid procfile detected (worker, exporter)" in result.stderr + result.stdout


def test_the_procfile_runs_the_workers_and_the_exporter_and_no_separate_drain() -> None:
    assert list(procfile_processes()) == ["worker", "exporter"]


@pytest.mark.parametrize(("process", "command"), procfile_processes().items())
def test_each_process_is_a_flowfleet_command_the_cli_parses(process: str, command: str) -> None:
    program, *arguments = shlex.split(command)

    args = parser().parse_args(arguments)

    assert program == "flowfleet"
    assert callable(getattr(args, "handler", None)), f"{process}: no command runs {command!r}"
    if args.command == "worker":
        assert not args.no_drain, "the workers drain the dead-letter queues: there is no other drain process"
