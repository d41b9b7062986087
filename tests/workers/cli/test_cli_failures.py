"""A command that cannot do its job says why in one line on stderr and exits non-zero: never a traceback.

Each test runs `flowfleet` as its own process, as on-call does, because a traceback, a closed pipe and
the interpreter's last flush only show at that level.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envelopes import envelope, order_v2

#: The console script's module: `python -m` runs the same `main()` the `flowfleet` script runs.
FLOWFLEET = (sys.executable, "-m", "workers.cli.main")
#: A TCP port nothing listens on (port 1 needs root to serve, so nobody does here).
NOBODY_LISTENS = "amqp://guest:guest@127.0.0.1:1/%2F"


def flowfleet_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any FLOWFLEET_* setting, a database under tmp_path, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLOWFLEET_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["FLOWFLEET_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fleet.db'}"
    env.update(extra)
    return env


def run_flowfleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWFLEET, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_one_clear_line(ran: subprocess.CompletedProcess[str], *words: str) -> None:
    assert ran.returncode != 0, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("flowfleet: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def test_a_worker_whose_metrics_port_is_taken_says_so_in_one_line(tmp_path: Path, taken_port: int) -> None:
    env = flowfleet_env(
        tmp_path,
        FLOWFLEET_METRICS_PORT=str(taken_port),
        FLOWFLEET_BROKER_URL=NOBODY_LISTENS,
        **{f"FLOWFLEET_{system}_URL": "http://127.0.0.1:1" for system in ("ERP", "CHANNELS", "NOTIFY", "PAYMENTS")},
    )

    ran = run_flowfleet(env, "worker", "--relay-only")

    assert_one_clear_line(ran, f"metrics port {taken_port}", "in use")


def test_output_into_a_pipe_closed_early_ends_with_one_line_not_a_broken_pipe_traceback(tmp_path: Path) -> None:
    """`flowfleet dlq actions 1 | head`: the reader went away before the command wrote."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        ran = subprocess.run(
            [*FLOWFLEET, "contracts", "list"],
            env=flowfleet_env(tmp_path),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)

    assert_one_clear_line(ran, "output")


def test_a_database_that_cannot_be_opened_is_named_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "fleet.db"
    env = flowfleet_env(tmp_path, FLOWFLEET_DATABASE_URL=f"sqlite:///{missing}")

    ran = run_flowfleet(env, "dlq", "list")

    assert_one_clear_line(ran, "database", "fleet.db")


def test_a_database_without_the_schema_says_to_upgrade_it(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    env = flowfleet_env(tmp_path, FLOWFLEET_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")

    ran = run_flowfleet(env, "dlq", "groups")

    assert_one_clear_line(ran, "database", "flowfleet db upgrade")


def test_a_database_url_with_a_password_is_named_without_it(tmp_path: Path) -> None:
    env = flowfleet_env(tmp_path, FLOWFLEET_DATABASE_URL="postgresql://fleet:hunter2@127.0.0.1:1/fleet")

    ran = run_flowfleet(env, "dlq", "list")

    assert_one_clear_line(ran, "archive", "127.0.0.1:1")
    assert "hunter2" not in ran.stderr


@pytest.mark.parametrize("command", [("topology", "check"), ("topology", "apply")])
def test_an_unreachable_broker_is_named_in_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    env = flowfleet_env(tmp_path, FLOWFLEET_BROKER_URL=NOBODY_LISTENS)

    ran = run_flowfleet(env, *command)

    assert_one_clear_line(ran, "broker", "127.0.0.1:1")


def test_a_publish_to_an_unreachable_broker_is_named_in_one_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(envelope(order_v2("ORD-1")) + b"\n")
    env = flowfleet_env(tmp_path, FLOWFLEET_BROKER_URL=NOBODY_LISTENS)

    ran = run_flowfleet(env, "publish", str(events))

    assert_one_clear_line(ran, "broker", "127.0.0.1:1")
