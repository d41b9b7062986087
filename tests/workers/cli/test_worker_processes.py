"""The `--processes` parent: which switches its children get, and that a child dying young is not restarted in a
hot loop (the pause doubles up to a cap) while one that ran a while is restarted after the first pause."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import pytest

from workers.cli import worker_processes
from workers.cli.worker import _child_arguments
from workers.cli.worker_processes import FIRST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS, YOUNG_SECONDS, Child, Supervisor
from workers.observability.metrics_endpoint import MULTIPROC_ENV
from workers.settings import Settings


class ExitedProcess:
    """A child process that has exited with `returncode`, or runs until signalled (None)."""

    pid = 4242

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


def test_each_child_runs_the_parents_switches_as_one_process() -> None:
    args = argparse.Namespace(flow=["orders", "catalog"], threads=4, no_drain=True, no_relay=False, relay_only=False)

    assert _child_arguments(args) == ["--flow=orders", "--flow=catalog", "--threads=4", "--no-drain", "--processes=1"]


def test_a_child_that_keeps_dying_young_waits_twice_as_long_each_time_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []
    supervisor = Supervisor(["flowfleet", "worker"], 1, {})
    monkeypatch.setattr(supervisor, "_start", lambda child: started.append(child.slot))
    child = Child(0, process=ExitedProcess(1), started_at=100.0)  # type: ignore[arg-type]  # a stand-in

    pauses = []
    now = 100.0
    for _ in range(7):
        supervisor._look_after(child, now + 1)  # died a second after it started
        pauses.append(child.pause)
        assert child.restart_at == pytest.approx(now + 1 + child.pause)
        supervisor._look_after(child, child.restart_at - 0.01)
        assert len(started) == len(pauses) - 1, "not restarted before its pause is over"
        now = child.restart_at
        supervisor._look_after(child, now)
        child.started_at = now

    assert pauses == [2.0, 4.0, 8.0, 16.0, LONGEST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS]
    assert len(started) == 7


def test_a_child_that_ran_a_while_is_restarted_after_the_first_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Supervisor(["flowfleet", "worker"], 1, {})
    monkeypatch.setattr(supervisor, "_start", lambda _child: None)
    child = Child(0, process=ExitedProcess(-9), started_at=0.0, pause=16.0)  # type: ignore[arg-type]  # a stand-in

    supervisor._look_after(child, YOUNG_SECONDS + 5)

    assert child.pause == FIRST_PAUSE_SECONDS


def test_a_signal_is_forwarded_once_to_every_running_child_and_none_is_restarted_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    supervisor = Supervisor(["flowfleet", "worker"], 2, {})
    running, dead = ExitedProcess(None), ExitedProcess(1)
    supervisor.children = [Child(0, process=running), Child(1, process=dead)]  # type: ignore[arg-type]  # stand-ins
    restarted: list[Any] = []
    monkeypatch.setattr(supervisor, "_start", restarted.append)

    supervisor.stop(signal.SIGTERM)
    supervisor.stop(signal.SIGINT)
    supervisor._look_after(supervisor.children[1], 10_000.0)

    assert running.signals == [signal.SIGTERM]
    assert dead.signals == []
    assert restarted == []


def test_the_parent_owns_a_metrics_directory_for_its_children_and_removes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen: dict[str, Any] = {}

    def run(self: Supervisor) -> int:
        directory = self.env[MULTIPROC_ENV]
        seen["directory"] = directory
        seen["exists"] = os.path.isdir(directory)
        seen["processes"] = self.env["FLOWFLEET_WORKER_PROCESSES"]
        return 0

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(Supervisor, "run", run)

    assert worker_processes.supervise(Settings(), 2, ["--processes=1"]) == 0
    assert seen["exists"] and seen["processes"] == "1"
    assert not os.path.exists(seen["directory"]), "removed when the children have stopped"
