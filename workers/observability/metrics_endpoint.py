"""Serves a worker's metrics: its own registry, or with PROMETHEUS_MULTIPROC_DIR every worker process's on the host.

Multiprocess mode (prometheus-client keeps each process's values in files in that directory) is
what makes the numbers right when a supervisor runs several `flowfleet worker` processes: any one
of them serves the sum of all. The variable must be set in the environment before the process
starts, and the directory must be local to the host (one PID namespace), as prometheus-client requires.

The directory is cleaned when a worker starts and no other live worker uses it. Every worker holds
a shared `flock` on `flowfleet-workers.lock` in it for its lifetime; a starting worker that can
take the lock exclusively is alone, so the files it finds are left over from processes that are
gone and are removed (their counters restart from zero, which Prometheus's `rate()` reads as a
reset). A worker that starts next to running ones cleans nothing: their counters stay. We chose this
over a separate clean-up command because it needs no step in the supervisor's start order, and is
right both when the supervisor starts all workers at once and when it restarts one of them.

All workers get the same `FLOWFLEET_METRICS_PORT`: the first to bind it serves the whole directory,
the others retry every few seconds and take over if that worker stops.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from workers.observability.metrics import count_no_deliveries_yet, count_no_messages_yet
from workers.settings import ConfigurationError

logger = logging.getLogger("flowfleet.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = "flowfleet-workers.lock"
#: How often a worker that could not bind the metrics port tries again (it serves once the port is free).
STANDBY_RETRY_SECONDS = 5.0

_processes: Gauge | None = None


def worker_processes() -> Gauge:
    """`flowfleet_worker_processes`: 1 per running worker; summed over the live ones in multiprocess mode.

    Created on first use, not at import: in multiprocess mode creating it writes this process's
    file, which must come after the directory was cleaned.
    """
    global _processes  # noqa: PLW0603  # one gauge per process, created late on purpose
    if _processes is None:
        _processes = Gauge(
            "flowfleet_worker_processes",
            "Worker processes running (in multiprocess mode: the live ones sharing the metrics directory).",
            multiprocess_mode="livesum",
        )
    return _processes


class MetricsDirectory:
    """This process's membership of a multiprocess metrics directory: joined at start, left at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    def join(self) -> bool:
        """Create the directory, clean it if no other live worker uses it, and hold a shared lock.

        Returns whether it was cleaned (this process was alone).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = (self.path / LOCK_NAME).open("a", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            alone = False
        else:
            alone = True
            for leftover in self.path.glob("*.db"):
                leftover.unlink(missing_ok=True)
        # Downgrade to shared (or, when another worker is cleaning right now, wait for it to finish).
        fcntl.flock(lock, fcntl.LOCK_SH)
        self._lock = lock
        return alone

    def leave(self) -> None:
        """Drop this process's live gauges and release the lock; its counters stay for the others to report."""
        mark_process_dead(os.getpid(), str(self.path))  # type: ignore[no-untyped-call]
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def reap_dead_processes(path: Path) -> list[int]:
    """Remove the live-gauge files of processes that are gone without leaving (kill -9); return their pids."""
    dead: set[int] = set()
    for file in path.glob("gauge_live*_*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            dead.add(int(pid_text))
    for pid in dead:
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class FleetCollector(Collector):
    """Every process's metrics from the directory, after dropping the live gauges of dead processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        reap_dead_processes(self.path)
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        return metrics


class MetricsEndpoint:
    """The worker's metrics: the directory it joined (if any) and the HTTP server (if it holds the port)."""

    def __init__(self, port: int | None, directory: MetricsDirectory | None) -> None:
        self.port = port
        self.directory = directory
        self.registry: CollectorRegistry = REGISTRY
        if directory is not None:
            self.registry = CollectorRegistry()
            self.registry.register(FleetCollector(directory.path))
        self._server: WSGIServer | None = None
        self._stopping = threading.Event()
        self._standby: threading.Thread | None = None

    def start(self) -> None:
        worker_processes().set(1)
        count_no_deliveries_yet()
        count_no_messages_yet()
        if self.port is None:
            return
        if self._bind():
            return
        # Multiprocess mode: a sibling worker holds the port and serves our numbers too.
        logger.info(
            "metrics port %d is taken: another worker serves this directory's metrics; taking over if it stops",
            self.port,
        )
        self._standby = threading.Thread(target=self._wait_for_port, name="flowfleet-metrics-standby", daemon=True)
        self._standby.start()

    def _bind(self) -> bool:
        assert self.port is not None
        try:
            self._server, _thread = start_http_server(self.port, registry=self.registry)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise ConfigurationError(f"cannot serve metrics on port {self.port}: {error.strerror}") from None
            if self.directory is None:
                raise ConfigurationError(
                    f"metrics port {self.port} is already in use (FLOWFLEET_METRICS_PORT): stop what holds it or pick "
                    "another; with PROMETHEUS_MULTIPROC_DIR set, workers share one port"
                ) from None
            return False
        logger.info("serving metrics on port %d%s", self.port, " (multiprocess)" if self.directory else "")
        return True

    def _wait_for_port(self) -> None:
        while not self._stopping.wait(STANDBY_RETRY_SECONDS):
            if self._bind():
                return

    def close(self) -> None:
        self._stopping.set()
        if self._standby is not None:
            self._standby.join(timeout=STANDBY_RETRY_SECONDS + 1)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.directory is not None:
            self.directory.leave()


def serve_worker_metrics(port: int | None) -> MetricsEndpoint:
    """Join the multiprocess directory when PROMETHEUS_MULTIPROC_DIR is set, and serve on `port` when given.

    Call it before the worker handles anything, and `close()` the result at exit.
    """
    path = os.environ.get(MULTIPROC_ENV)
    directory = MetricsDirectory(Path(path)) if path else None
    if directory is not None and directory.join():
        logger.info("metrics directory %s: no other worker uses it; cleaned", directory.path)
    endpoint = MetricsEndpoint(port or None, directory)
    endpoint.start()
    return endpoint
