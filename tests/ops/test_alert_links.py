"""Every link an alert carries opens: an absolute URL from the base the operator sets once, rendered by Prometheus."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.support.observability import ALERT_TESTS, ROOT, RUNBOOK_URL_PREFIX, alert_rules

PROMETHEUS_CONFIG = ROOT / "ops" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
DEFAULT_BASE = RUNBOOK_URL_PREFIX.split("{{ else }}")[1].split("{{ end }}")[0]


def _expected_annotations() -> list[tuple[str, dict[str, Any]]]:
    """Every alert's annotations as promtool's unit tests expect Prometheus to render them."""
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    return [
        (case["alertname"], alert["exp_annotations"])
        for test in tests
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts") or []
    ]


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def test_every_rendered_link_is_an_absolute_url_and_every_alert_is_rendered() -> None:
    rendered = _expected_annotations()

    assert {name for name, _ in rendered} >= {rule["alert"] for rule in alert_rules()}
    for name, rendered_annotations in rendered:
        assert _absolute(rendered_annotations["runbook_url"]), name
        assert rendered_annotations["runbook_url"].startswith(f"{DEFAULT_BASE}/alerts/"), name
        assert rendered_annotations["console_url"] == "", f"{name}: no console link without a configured console_url"


def test_every_alert_has_a_console_link_when_one_is_configured() -> None:
    for rule in alert_rules():
        console = rule["annotations"]["console_url"]
        assert console.startswith("{{ with $externalLabels.console_url }}{{ . }}/"), rule["alert"]
        assert console.endswith("{{ end }}"), rule["alert"]


def test_prometheus_sets_the_bases_once_as_external_labels_and_the_default_is_the_stacks_runbook_server() -> None:
    labels = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["global"]["external_labels"]
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]

    assert _absolute(labels["runbook_base_url"]) and _absolute(labels["console_url"])
    assert labels["runbook_base_url"] == DEFAULT_BASE
    port = urlsplit(DEFAULT_BASE).port
    assert f"127.0.0.1:{port}:8080" in compose["runbooks"]["ports"]
    assert any(volume.startswith("./runbooks:") for volume in compose["runbooks"]["volumes"])
    console_port = urlsplit(labels["console_url"]).port
    assert any(str(console_port) in port for port in compose["console"]["ports"])
