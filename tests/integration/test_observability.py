"""A real scrape of running workers and `flowfleet exporter` has every metric the dashboard and the alerts use,
and several worker processes sharing a metrics directory report their sum on one port."""

from __future__ import annotations

import importlib
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.integration import Metrics, flowfleet_command, free_port, wait_until
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration


def _ops_helpers() -> ModuleType:
    """tests/support/observability.py: the dashboard's and alert rules' queries and the metric names they use."""
    return importlib.import_module("tests.support.observability")


def sample_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def answers(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The metric's value, or None while nothing serves the port (a worker taking it over)."""
    try:
        return metrics.value(name, **labels)
    except OSError:
        return None


@pytest.fixture
def exporter(service_env: dict[str, str], management_url: str, tmp_path: Path) -> Iterator[Callable[[], Metrics]]:
    """Start `flowfleet exporter` on a free port; returns its Metrics once it answers."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> Metrics:
        metrics = Metrics(free_port())
        log = (tmp_path / "exporter.log").open("wb")
        env = {**service_env, "FLOWFLEET_MANAGEMENT_URL": management_url, "FLOWFLEET_METRICS_PORT": str(metrics.port)}
        process = subprocess.Popen([*flowfleet_command(), "exporter"], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        started.append(process)

        def serving() -> bool:
            assert process.poll() is None, (tmp_path / "exporter.log").read_text()
            return answers(metrics, "flowfleet_exporter_up") is not None

        wait_until(serving, timeout=20, what="the exporter to serve")
        return metrics

    yield start
    for process in started:
        process.terminate()
        assert process.wait(timeout=10) == 0, "the exporter stops cleanly on SIGTERM"


def test_every_metric_the_dashboard_and_the_alert_rules_use_is_in_a_real_scrape(
    worker: Any,
    exporter: Callable[[], Metrics],
    publish: Callable[..., None],
    envelope: Callable[..., dict[str, Any]],
    apply_event: Callable[..., dict[str, Any]],
    database: Any,
    fake_erp: Any,
    flowfleet: Callable[..., subprocess.CompletedProcess[str]],
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    ops = _ops_helpers()
    worker(FLOWFLEET_METRICS_PORT=str(metrics.port), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    # Processed after one retry (the ERP answers 503 once): throughput, retries, latency, lag, downstream 5xx.
    fake_erp.script("ORD-OBS-1", 503)
    publish(envelope(order_v2("ORD-OBS-1", [("MUG-BLUE", 1)])))
    # A stale count, and a body that is not JSON (dead-lettered at stage decode).
    apply_event("inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 10, "sequence": 5})
    apply_event("inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 9, "sequence": 3})
    publish(b"{not json")
    # An order the ERP refuses (dead-lettered), then takes: replayed, applied.
    fake_erp.script("ORD-OBS-2", 400)
    publish(envelope(order_v2("ORD-OBS-2", [("MUG-BLUE", 1)])))
    wait_until(lambda: len(database.orders("ORD-OBS-1")) == 1, what="ORD-OBS-1 applied after its retry")
    refused = wait_until(
        lambda: [row for row in database.dead_letters() if b"ORD-OBS-2" in bytes(row["body"])],
        what="ORD-OBS-2 in the archive",
    )
    wait_until(lambda: len(database.dead_letters()) == 2, what="both dead letters archived")
    replay = flowfleet("dlq", "replay", str(refused[0]["id"]), "--reason", "the ERP takes it now", "--wait", "30")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    wait_until(lambda: database.orders("ORD-OBS-2"), what="ORD-OBS-2 applied by its replay")
    exporter_metrics = exporter()
    # The management API computes queue statistics every few seconds: wait for the first.
    wait_until(
        lambda: "flowfleet_queue_messages" in sample_names(exporter_metrics.port),
        timeout=30,
        what="queue statistics from the management API",
    )

    scraped = sample_names(metrics.port) | sample_names(exporter_metrics.port)

    used = ops.used_metric_names()
    recorded = ops.recorded_names()
    missing = {name: sorted(where) for name, where in used.items() if name not in scraped | recorded}
    assert not missing, f"used by the dashboard or the alerts but not in a real scrape: {missing}"
    assert exporter_metrics.value("flowfleet_exporter_up") == 3, "broker, archive and replays were all read"
    assert exporter_metrics.value("flowfleet_dead_letters_open", flow="orders", stage="decode") == 1
    assert exporter_metrics.value("flowfleet_queue_consumers", queue="orders") >= 1
    assert metrics.value("flowfleet_replays_total", flow="orders", result="applied") == 1
    assert metrics.value("flowfleet_messages_total", flow="orders", outcome="retried") >= 1


def test_worker_processes_sharing_a_metrics_directory_report_their_sum_on_one_port(
    worker: Any, publish: Callable[..., None], envelope: Callable[..., dict[str, Any]], database: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"not a metrics file: left over, and cleaned by the first worker")
    port = free_port()
    metrics = Metrics(port)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "FLOWFLEET_METRICS_PORT": str(port)}

    def processed() -> float | None:
        return answers(metrics, "flowfleet_messages_total", flow="orders", outcome="processed")

    def order(order_id: str) -> None:
        publish(envelope(order_v2(order_id, [("MUG-BLUE", 1)])))

    def wait_for_processes(count: int) -> None:
        wait_until(lambda: answers(metrics, "flowfleet_worker_processes") == count, what=f"{count} worker processes")

    first = worker(**env)
    wait_for_processes(1)
    database.seed_stock("MUG-BLUE", "BER-1", 20)
    for number in range(3):
        order(f"ORD-MP-A{number}")
    wait_until(lambda: processed() == 3, what="3 orders counted")

    second = worker(**env)
    wait_for_processes(2)
    assert "metrics port" in second.log() and "taken" in second.log(), second.log()
    for number in range(3):
        order(f"ORD-MP-B{number}")
    wait_until(lambda: processed() == 6, what="6 orders counted by the first worker's endpoint")

    first.stop()
    wait_for_processes(1)  # the second worker took the port over, and the first left the directory
    assert processed() == 6, "the stopped worker's counts are still in the sum"

    third = worker(**env)
    wait_for_processes(2)
    third.kill()
    wait_for_processes(1)  # killed with -9: its live gauge is dropped at the next scrape
    assert len(database.orders()) == 6
