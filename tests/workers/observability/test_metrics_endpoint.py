"""A worker's metrics endpoint: only a worker that is alone cleans the multiprocess directory; the port is shared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY as METRICS

from contracts.published import REGISTRY
from workers.flows import FLOWS
from workers.observability import metrics_endpoint
from workers.observability.metrics import count_no_messages_yet, messages_total
from workers.observability.metrics_endpoint import LOCK_NAME, MetricsDirectory, MetricsEndpoint, reap_dead_processes
from workers.settings import ConfigurationError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
        return body.decode("utf-8")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(child.stdout)


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[MetricsDirectory]:
    joined = MetricsDirectory(tmp_path / "metrics")
    yield joined
    joined.leave()


def test_the_first_worker_creates_and_cleans_the_directory(tmp_path: Path, directory: MetricsDirectory) -> None:
    directory.path.mkdir()
    (directory.path / "counter_4242.db").write_bytes(b"left over from a dead worker")

    assert directory.join() is True

    assert [p.name for p in directory.path.iterdir()] == [LOCK_NAME], "the lock is no *.db the collector would read"


def test_a_worker_that_starts_next_to_a_running_one_cleans_nothing(directory: MetricsDirectory) -> None:
    directory.join()
    counters = directory.path / "counter_4242.db"
    counters.write_bytes(b"the running worker's counters")
    second = MetricsDirectory(directory.path)

    assert second.join() is False
    second.leave()

    assert counters.exists()


def test_once_every_worker_has_left_the_next_one_cleans_again(directory: MetricsDirectory) -> None:
    directory.join()
    (directory.path / "counter_4242.db").write_bytes(b"counters")
    directory.leave()
    again = MetricsDirectory(directory.path)

    assert again.join() is True
    again.leave()

    assert not list(directory.path.glob("*.db"))


def test_live_gauges_of_processes_killed_without_leaving_are_dropped_and_counters_kept(tmp_path: Path) -> None:
    gone, alive = dead_pid(), os.getpid()
    for name in (f"gauge_livesum_{gone}.db", f"gauge_livesum_{alive}.db", f"counter_{gone}.db", f"gauge_all_{gone}.db"):
        (tmp_path / name).write_bytes(b"")

    assert reap_dead_processes(tmp_path) == [gone]

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{alive}.db", f"counter_{gone}.db", f"gauge_all_{gone}.db"]
    )


def test_without_a_directory_the_worker_serves_its_own_registry_as_before() -> None:
    port = free_port()
    messages_total.labels("orders", "order.created", "2", "processed").inc()
    endpoint = metrics_endpoint.serve_worker_metrics(port)
    try:
        text = scrape(port)
    finally:
        endpoint.close()

    assert "flowfleet_worker_processes 1.0" in text
    assert 'flowfleet_messages_total{contract="order.created",flow="orders",outcome="processed",version="2"}' in text


def test_a_worker_serves_every_system_and_delivery_result_from_the_start_before_any_delivery() -> None:
    port = free_port()
    endpoint = metrics_endpoint.serve_worker_metrics(port)
    try:
        text = scrape(port)
    finally:
        endpoint.close()

    for system in ("erp", "channels", "notify", "payments"):
        for result in ("delivered", "retried", "throttled", "dead_lettered", "released", "lease_lost"):
            assert f'flowfleet_deliveries_total{{result="{result}",system="{system}"}}' in text, (system, result)


def test_without_a_directory_a_taken_port_stops_the_worker() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        with pytest.raises(ConfigurationError, match="in use"):
            metrics_endpoint.serve_worker_metrics(taken.getsockname()[1])


def test_with_a_directory_a_worker_waits_for_the_port_and_takes_over_when_it_is_free(
    directory: MetricsDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_endpoint, "STANDBY_RETRY_SECONDS", 0.05)
    directory.join()
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    endpoint = MetricsEndpoint(port, directory)
    try:
        endpoint.start()
        taken.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the standby worker never took the port over"
                time.sleep(0.05)
    finally:
        taken.close()
        endpoint.close()


def test_a_multiprocess_directory_that_does_not_exist_yet_is_created_so_any_command_can_count(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet" / "metrics"
    script = (
        "from workers.observability.metrics import messages_total; "
        "messages_total.labels('f', 'c', '1', 'processed').inc()"
    )

    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert any(missing.glob("counter_*.db"))


def test_every_flows_known_label_sets_exist_at_zero_from_the_start_so_a_first_burst_is_seen_whole() -> None:
    count_no_messages_yet()

    def sample(name: str, **labels: str) -> float | None:
        return METRICS.get_sample_value(name, labels)

    for contract in REGISTRY:
        for version in contract.versions:
            labels = {"flow": contract.flow, "contract": contract.name, "version": str(version)}
            assert sample("flowfleet_messages_total", **labels, outcome="dead_lettered") is not None, labels
    for flow in FLOWS:
        assert (
            sample(
                "flowfleet_messages_total",
                flow=flow.name,
                contract="unknown",
                version="unknown",
                outcome="dead_lettered",
            )
            is not None
        )
        assert sample("flowfleet_handler_seconds_count", flow=flow.name) is not None
        assert sample("flowfleet_event_lag_seconds_count", flow=flow.name) is not None
