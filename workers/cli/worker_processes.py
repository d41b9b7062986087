"""`flowfleet worker --processes N`: N worker processes under one parent, which restarts the ones that die.

Each child is a plain `flowfleet worker` (one process, its own threads, relay and drain) started
afresh, not forked, so it shares no connection or thread with the parent. The parent forwards
SIGTERM and SIGINT to every child, so each drains as a lone worker does (in-flight messages finish
and are acked, relay leases are given back), and exits when all have stopped; a parent killed outright
leaves no child behind either (each watches its pid: workers.cli.parent_watch). A child that dies is
started again after a pause that doubles while children keep dying young (1 s up to 30 s), so a
worker that cannot start does not spin.

Metrics: every child gets the same FLOWFLEET_METRICS_PORT and a shared PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode, workers.observability.metrics_endpoint): one scrape target
for the host reports the sum of the children. Unless the environment names one, the directory is a
temporary one the parent creates and removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from workers.cli.parent_watch import PARENT_ENV
from workers.observability.logs import configure_logging
from workers.observability.metrics_endpoint import MULTIPROC_ENV
from workers.observability.scrubbing import secret_values
from workers.settings import Settings

logger = logging.getLogger("flowfleet.worker")

#: A child that ran for less than this died young: the pause before its restart doubles.
YOUNG_SECONDS = 10.0
FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 30.0
#: How often the parent looks at its children.
POLL_SECONDS = 0.2


@dataclass
class Child:
    """One worker process slot: the process running in it, when it started, and when it may start again."""

    slot: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = FIRST_PAUSE_SECONDS
    restart_at: float = 0.0


class Supervisor:
    """Runs `processes` children of `command`, restarting the dead, until told to stop."""

    def __init__(self, command: Sequence[str], processes: int, env: dict[str, str]) -> None:
        self.command = list(command)
        self.env = env
        self.children = [Child(slot) for slot in range(processes)]
        self.stopping = threading.Event()
        self._signal: int | None = None

    def run(self) -> int:
        """Start every child, keep them running, and return once all have stopped after a signal."""
        for child in self.children:
            self._start(child)
        while True:
            now = time.monotonic()
            for child in self.children:
                self._look_after(child, now)
            if self.stopping.is_set() and all(c.process is None or c.process.poll() is not None for c in self.children):
                break
            time.sleep(POLL_SECONDS)
        codes = [c.process.returncode for c in self.children if c.process is not None]
        logger.info("worker processes stopped: exit codes %s", codes)
        return 0 if all(code == 0 for code in codes) else 1

    def stop(self, signum: int) -> None:
        """Tell every child to drain (the signal the parent got), once."""
        if self.stopping.is_set():
            return
        self._signal = signum
        self.stopping.set()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signum)

    def _start(self, child: Child) -> None:
        # Its own process group: a terminal's Ctrl-C reaches the parent only, which forwards it once.
        child.process = subprocess.Popen(self.command, env=self.env, process_group=0)  # noqa: S603  # our own command line
        child.started_at = time.monotonic()
        logger.info("worker process %d started (pid %d)", child.slot, child.process.pid)

    def _look_after(self, child: Child, now: float) -> None:
        process = child.process
        if process is None or process.poll() is None or self.stopping.is_set():
            return
        if child.restart_at == 0.0:
            lived = now - child.started_at
            child.pause = FIRST_PAUSE_SECONDS if lived >= YOUNG_SECONDS else min(child.pause * 2, LONGEST_PAUSE_SECONDS)
            child.restart_at = now + child.pause
            logger.warning(
                "worker process %d (pid %d) exited with %s after %.0f s; starting it again in %.0f s",
                child.slot,
                process.pid,
                process.returncode,
                lived,
                child.pause,
            )
        elif now >= child.restart_at:
            child.restart_at = 0.0
            self._start(child)


def supervise(settings: Settings, processes: int, child_args: Sequence[str]) -> int:
    """Run `flowfleet worker <child_args>` in `processes` processes until SIGTERM or SIGINT; 0 if all exited 0."""
    configure_logging(json=settings.log_format == "json", level=settings.log_level, secrets=secret_values(settings))
    env = dict(os.environ)
    env["FLOWFLEET_WORKER_PROCESSES"] = "1"
    env[PARENT_ENV] = str(os.getpid())  # each child stops once this process is gone (workers.cli.parent_watch)
    owned = None
    if not env.get(MULTIPROC_ENV):
        owned = tempfile.mkdtemp(prefix="flowfleet-metrics-")
        env[MULTIPROC_ENV] = owned
    command = [sys.executable, "-m", "workers.cli.main", "worker", *child_args]
    supervisor = Supervisor(command, processes, env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping %d worker processes", signal.Signals(signum).name, processes)
        supervisor.stop(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
