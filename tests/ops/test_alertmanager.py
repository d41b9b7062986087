"""The example Alertmanager config is valid, routes every owning team by severity, and pages a dead worker once."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.observability import ROOT, debian_tool
from workers.ownership import load

CONFIG = ROOT / "ops" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_CONFIG = ROOT / "ops" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [debian_tool("amtool", "prometheus-alertmanager"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def receiver_for(**labels: str) -> str:
    tested = amtool("config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items()))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    return tested.stdout.strip()


def test_amtool_accepts_the_config() -> None:
    checked = amtool("check-config", str(CONFIG))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@pytest.mark.parametrize("team", sorted(load().owners_by_team()))
def test_every_owning_team_gets_its_alerts_and_a_critical_one_pages(team: str) -> None:
    warning, critical = receiver_for(team=team, severity="warning"), receiver_for(team=team, severity="critical")
    downstream = team in {owner.team for owner in load().owners["systems"].values()}

    assert warning.startswith("downstream-" if downstream else f"{team}-"), warning
    assert critical.endswith("-pager") or team == "publishers", critical


def test_one_incident_is_one_notification_and_a_dead_worker_does_not_page_per_flow() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))

    assert config["route"]["group_by"] == ["team", "service"]
    [inhibit] = [
        rule for rule in config["inhibit_rules"] if 'alertname="FlowfleetNoConsumers"' in rule["target_matchers"]
    ]
    assert inhibit["source_matchers"] == ['alertname="FlowfleetWorkerDown"'] and inhibit["equal"] == ["team"]


def test_prometheus_sends_alerts_to_the_compose_alertmanager_with_this_config() -> None:
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]

    [target] = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target == "alertmanager:9093"
    assert (
        "./ops/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in services["alertmanager"]["volumes"]
    )
    assert services["prometheus"]["depends_on"]["alertmanager"] == {"condition": "service_healthy"}
