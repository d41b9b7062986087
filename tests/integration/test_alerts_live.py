"""The shipped alert rules and Alertmanager routing, proven live: Debian's prometheus and prometheus-alertmanager
run the project's own config (windows shortened by code), a real exporter is stopped, and a webhook here
receives the alert with its owner's team and an absolute runbook link, then its resolution."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.integration import Metrics, flowfleet_command, free_port, wait_until
from tests.support.observability import ALERTS, ROOT, debian_tool
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration

ALERTMANAGER_CONFIG = ROOT / "ops" / "alertmanager" / "alertmanager.yml"
RUNBOOK_BASE = "https://runbooks.example.com/flowfleet"


def shortened(duration: str) -> str:
    """A rule's `for:`, `keep_firing_for:` or range, scaled so that minutes become seconds."""
    value, unit = int(duration[:-1]), duration[-1]
    return f"{value * {'s': 1, 'm': 1, 'h': 60}[unit] // (60 if unit == 's' else 1) or 1}s"


def _hours_as_seconds(expr: str) -> str:
    """A fixed objective `vector(4 * 3600)`, in hours, scaled so that its hours become seconds (4 s)."""

    def scaled(match: re.Match[str]) -> str:
        seconds = 1
        for factor in match.group(1).split("*"):
            seconds *= int(factor)
        return f"vector({max(seconds // 3600, 1)})"

    return re.sub(r"vector\(([\d\s*]+)\)", scaled, expr)


def _spelled(duration: str) -> str:
    value, unit = int(duration[:-1]), {"s": "second", "m": "minute", "h": "hour"}[duration[-1]]
    return f"{value} {unit}{'' if value == 1 else 's'}"


def fast_rules(target: Path) -> Path:
    """The shipped rules with every wait and window shortened (minutes to seconds), the dead-letter objectives
    too (hours to seconds), and the alert text saying the shortened windows: derived, so they cannot drift."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    for group in groups:
        for rule in group["rules"]:
            if "record" in rule:
                rule["expr"] = _hours_as_seconds(rule["expr"])
                continue
            durations = {rule[key]: shortened(rule[key]) for key in ("for", "keep_firing_for") if key in rule}
            for window in re.findall(r"\[(\d+[smh])", rule["expr"]):
                durations[window] = f"{max(int(shortened(window)[:-1]), 5)}s"  # a few scrapes in every range
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = durations[rule[key]]
            for shipped, short in durations.items():
                rule["expr"] = rule["expr"].replace(f"[{shipped}]", f"[{short}]")
            for name in rule["annotations"]:
                for shipped, short in durations.items():
                    rule["annotations"][name] = rule["annotations"][name].replace(_spelled(shipped), _spelled(short))
    target.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return target


def test_the_live_copy_shortens_windows_objectives_and_the_text_that_names_them(tmp_path: Path) -> None:
    rules = {
        rule.get("alert") or f"{rule['record']}{{flow={rule['labels']['flow']}}}": rule
        for group in yaml.safe_load(fast_rules(tmp_path / "alerts.yml").read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    }

    inflow = rules["FlowfleetDeadLetterInflow"]
    assert "[15s]" in inflow["expr"] and "15 seconds" in inflow["annotations"]["summary"]
    assert "minutes" not in inflow["annotations"]["summary"] + inflow["annotations"]["description"]
    assert rules["flowfleet:dead_letter_age_objective_seconds{flow=orders}"]["expr"] == "vector(4)"
    assert rules["flowfleet:dead_letter_age_objective_seconds{flow=catalog}"]["expr"] == "vector(24)"
    lag = rules["FlowfleetEventLag"]
    assert lag["for"] == "15s" and "For 15 seconds" in lag["annotations"]["description"]
    assert "more than 5 minutes old" in lag["annotations"]["description"], "a level, not a window: kept"
    assert rules["FlowfleetWorkerDown"]["for"] == "2s"


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, name: str, status: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [
            (notification, alert)
            for notification in list(self.notifications)
            for alert in notification["alerts"]
            if alert["labels"]["alertname"] == name and alert["status"] == status
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def start_alertmanager(webhook: Webhook, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{webhook.port}/{receiver['name']}"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    binary = debian_tool("prometheus-alertmanager", "prometheus-alertmanager")
    command = [binary, f"--config.file={path}", f"--storage.path={tmp_path / 'am'}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    processes.append(_start(command, tmp_path / "alertmanager.log"))
    return port


def start_prometheus(
    exporter_port: int, alertmanager_port: int, tmp_path: Path, processes: list[Any], worker_port: int | None = None
) -> int:
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": "1s",
            "evaluation_interval": "1s",
            "external_labels": {"runbook_base_url": RUNBOOK_BASE},
        },
        "rule_files": [str(fast_rules(tmp_path / "alerts.yml"))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "flowfleet-exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
        ],
    }
    if worker_port is not None:
        worker_job = {"job_name": "flowfleet-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}
        config["scrape_configs"].append(worker_job)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    command = [debian_tool("prometheus", "prometheus"), f"--config.file={path}"]
    command += [f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]
    processes.append(_start(command, tmp_path / "prometheus.log"))
    return port


def test_a_stopped_exporter_reaches_its_owner_with_an_absolute_runbook_link_and_resolves_when_it_is_back(
    service_env: dict[str, str], webhook: Webhook, processes: list[Any], tmp_path: Path
) -> None:
    exporter_port = free_port()
    # A management API nobody answers: the exporter serves, and reports its `broker` source down.
    unanswered = f"http://guest:guest@127.0.0.1:{free_port()}"
    env = {**service_env, "FLOWFLEET_METRICS_PORT": str(exporter_port), "FLOWFLEET_MANAGEMENT_URL": unanswered}
    command = [*flowfleet_command(), "exporter"]

    def start_exporter() -> subprocess.Popen[bytes]:
        with (tmp_path / "exporter.log").open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        wait_until(lambda: _answers(exporter_port), timeout=20, what="the exporter to serve")
        return process

    migrated = subprocess.run(
        [*flowfleet_command(), "db", "upgrade"], env=env, capture_output=True, timeout=60, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    exporter = start_exporter()
    alertmanager = start_alertmanager(webhook, tmp_path, processes)
    prometheus = start_prometheus(exporter_port, alertmanager, tmp_path, processes)
    wait_until(lambda: _query(prometheus, "flowfleet_exporter_up"), timeout=30, what="Prometheus scraping the exporter")

    broker = wait_until(lambda: webhook.alerts("FlowfleetExporterDown", "firing"), timeout=60, what="ExporterDown")
    assert {alert["labels"]["source"] for _, alert in broker} == {"broker"}, "it names the source it cannot read"

    exporter.terminate()
    exporter.wait(timeout=10)
    fired = wait_until(
        lambda: _from(webhook.alerts("FlowfleetExporterDown", "firing"), "scrape"), timeout=60, what="not scraped"
    )
    notification, alert = fired[0]
    print(json.dumps(notification, indent=2))  # the real notification, as the webhook received it
    (tmp_path / "notification.json").write_text(json.dumps(notification, indent=2), encoding="utf-8")
    assert alert["labels"]["team"] == "integration" and alert["labels"]["source"] == "scrape"
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}/alerts/exporter-down.md#meaning"
    assert notification["path"] == "/integration-tickets", "routed by team and severity"
    assert not _from(webhook.alerts("FlowfleetExporterDown", "resolved"), "scrape")

    start_exporter()
    wait_until(
        lambda: _from(webhook.alerts("FlowfleetExporterDown", "resolved"), "scrape"), timeout=60, what="resolved"
    )


def test_bad_bodies_an_erp_outage_a_stopped_exporter_and_a_stopped_worker_reach_their_owner_and_resolve(
    service_env: dict[str, str],
    management_url: str,
    worker: Any,
    publish: Any,
    envelope: Any,
    database: Any,
    fake_erp: Any,
    flowfleet: Any,
    webhook: Webhook,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    """One Prometheus and Alertmanager run for every incident, one after the other (about two minutes)."""
    exporter_port, worker_port = free_port(), free_port()
    worker_env = {"FLOWFLEET_METRICS_PORT": str(worker_port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    running = worker(**worker_env)  # it migrates the database
    # The ERP's delivery objective is the operator's setting (not a rule): 5 s, so its backlog alert fires soon.
    exporter_env = {"FLOWFLEET_METRICS_PORT": str(exporter_port), "FLOWFLEET_MANAGEMENT_URL": management_url}
    exporter_env["FLOWFLEET_ERP_DELIVERY_OBJECTIVE_SECONDS"] = "5"

    def start_exporter() -> subprocess.Popen[bytes]:
        with (tmp_path / "exporter.log").open("ab") as log:
            command = [*flowfleet_command(), "exporter"]
            process = subprocess.Popen(command, env={**service_env, **exporter_env}, stdout=log, stderr=log)
        processes.append(process)
        wait_until(lambda: _answers(exporter_port), timeout=20, what="the exporter to serve")
        return process

    exporter = start_exporter()
    alertmanager = start_alertmanager(webhook, tmp_path, processes)
    prometheus = start_prometheus(exporter_port, alertmanager, tmp_path, processes, worker_port=worker_port)
    wait_until(lambda: _query(prometheus, 'up{job="flowfleet-worker"} == 1'), timeout=30, what="the worker scraped")

    # An ERP answering 503: the order is applied, its export waits in the outbox past the objective.
    fake_erp.default = fake_erp.reply(503)
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    publish(envelope(order_v2("ORD-LIVE-1", [("MUG-BLUE", 1)])))
    # Bad bodies meanwhile: more than the inflow level within the (shortened) window; they stay open.
    for _ in range(15):
        publish(b"{not json")

    inflow = wait_until(lambda: webhook.alerts("FlowfleetDeadLetterInflow", "firing"), timeout=60, what="inflow")
    _assert_owned(inflow, "integration", "dead-letter-inflow")
    assert inflow[0][1]["labels"]["flow"] == "orders"
    assert "in 15 seconds" in inflow[0][1]["annotations"]["summary"], "the text says the rule's own window"
    backlog = wait_until(
        lambda: webhook.alerts("FlowfleetDeliveryBacklogOlderThanObjective", "firing"), timeout=60, what="backlog"
    )
    _assert_owned(backlog, "erp", "delivery-backlog-older-than-objective")
    print(json.dumps(backlog[0][0], indent=2))  # the real notification, as the webhook received it
    assert backlog[0][1]["labels"]["system"] == "erp"
    old = wait_until(
        lambda: webhook.alerts("FlowfleetDeadLetterOlderThanObjective", "firing"), timeout=60, what="old letters"
    )
    _assert_owned(old, "integration", "dead-letter-older-than-objective")

    fake_erp.default = fake_erp.reply(200)  # the ERP is back: the relay sends the export
    wait_until(
        lambda: webhook.alerts("FlowfleetDeliveryBacklogOlderThanObjective", "resolved"), timeout=60, what="sent"
    )
    assert "ORD-LIVE-1" in " ".join(fake_erp.exports())
    wait_until(lambda: webhook.alerts("FlowfleetDeadLetterInflow", "resolved"), timeout=60, what="inflow resolved")

    # A stopped exporter: the archive-based alert keeps firing until ExporterDown has said why it is blind.
    exporter.terminate()
    exporter.wait(timeout=10)
    wait_until(
        lambda: _from(webhook.alerts("FlowfleetExporterDown", "firing"), "scrape"), timeout=60, what="not scraped"
    )
    assert not webhook.alerts("FlowfleetDeadLetterOlderThanObjective", "resolved"), "no false all-clear"
    start_exporter()
    discarded = flowfleet("dlq", "discard", "--all", "--reason", "bad bodies from the live alert test")
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    wait_until(lambda: webhook.alerts("FlowfleetDeadLetterOlderThanObjective", "resolved"), timeout=60, what="handled")

    # A stopped worker pages once: WorkerDown reaches its owner, NoConsumers fires but is inhibited.
    running.stop(timeout=10)
    down = wait_until(lambda: webhook.alerts("FlowfleetWorkerDown", "firing"), timeout=60, what="WorkerDown")
    _assert_owned(down, "integration", "worker-down")
    wait_until(lambda: _inhibited(alertmanager, "FlowfleetNoConsumers"), timeout=60, what="NoConsumers inhibited")
    assert not webhook.alerts("FlowfleetNoConsumers", "firing"), "one worker's death pages once"

    worker(**worker_env)
    wait_until(lambda: webhook.alerts("FlowfleetWorkerDown", "resolved"), timeout=60, what="WorkerDown resolved")


def _assert_owned(alerts: list[tuple[dict[str, Any], dict[str, Any]]], team: str, runbook: str) -> None:
    for _, alert in alerts:
        assert alert["labels"]["team"] == team, alert["labels"]
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}/alerts/{runbook}.md#meaning"


def _inhibited(alertmanager_port: int, name: str) -> bool:
    """Whether Alertmanager holds the alert and suppresses it by an inhibition."""
    query = urllib.parse.urlencode({"filter": f'alertname="{name}"'})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{alertmanager_port}/api/v2/alerts?{query}", timeout=5) as answer:
            alerts: list[dict[str, Any]] = json.loads(answer.read())
    except OSError:
        return False
    return bool(alerts) and all(alert["status"]["inhibitedBy"] for alert in alerts)


def _answers(port: int) -> bool:
    try:
        Metrics(port).value("flowfleet_exporter_up", source="archive")
    except OSError:
        return False
    return True


def _from(
    alerts: list[tuple[dict[str, Any], dict[str, Any]]], source: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(notification, alert) for notification, alert in alerts if alert["labels"].get("source") == source]


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    """Prometheus' answer to an instant query; empty while it is not ready."""
    url = f"http://127.0.0.1:{port}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    except OSError:
        return []
    return result
