"""What the ops tests share: the shipped dashboard and alert rules, the metric names their PromQL uses, promtool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "flowfleet.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "ops" / "prometheus" / "alerts.test.yml"
RUNBOOKS = ROOT / "runbooks"

#: What Grafana puts in place of its template variables, for promtool and for a real query.
TEMPLATE_VALUES = {
    "${datasource}": "prometheus",
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$flow": ".*",
}


@dataclass(frozen=True)
class Query:
    """One PromQL expression shipped in ops/, and where it is."""

    where: str
    expr: str


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def substitute(expr: str) -> str:
    for variable, value in TEMPLATE_VALUES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a template variable without a test value in: {expr}"
    return expr


def dashboard_queries() -> list[Query]:
    """Every panel target's expression, template variables substituted."""
    return [
        Query(f"panel {panel['id']} {panel['title']!r} target {target['refId']}", substitute(target["expr"]))
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def variable_metrics() -> set[str]:
    """Metrics the dashboard's template variables read (`label_values(metric, label)`)."""
    names: set[str] = set()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
            assert match, f"variable {variable['name']}: expected label_values(metric, label), got {query}"
            names.add(match.group(1))
    return names


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    """Series the rules themselves record: Prometheus makes them, no scrape does."""
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def rule_queries() -> list[Query]:
    return [
        Query(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rule_groups()
        for rule in group["rules"]
    ]


# -- metric names in PromQL ---------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(r"(?P<number>\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"inf", "nan", "start", "end"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression selects, by a small lexer.

    Strings, label matchers, ranges and grouping clauses are removed first; what is left that is a
    name, is not called like a function and is not a keyword, is a metric.
    """
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _CLAUSE.sub(" ", text)
    text = re.sub(r"\b(?:group_left|group_right)\b", " ", text)
    names: set[str] = set()
    for token in _TOKEN.finditer(text):
        name = token.group("name")
        if name and not token.group("call") and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


# -- promtool -------------------------------------------------------------------------------------------


def debian_tool(name: str, package: str) -> str:
    """A tool's path; skipped without it, except under CI=true, where it must be installed (.ci/run does)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true needs it", pytrace=False)
        pytest.skip(message)
    return found


def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def check_expressions(queries: list[Query], directory: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on a rules file with one recording rule per expression: it parses each one."""
    rules = [{"record": f"flowfleet_test:query_{index}", "expr": query.expr} for index, query in enumerate(queries)]
    path = directory / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}), encoding="utf-8")
    return run_promtool("check", "rules", str(path))


#: Names the alerts use that another exporter serves: Prometheus itself, RabbitMQ's rabbitmq_prometheus plugin.
SCRAPED_ELSEWHERE = {"up", "rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark"}


def used_metric_names() -> dict[str, set[str]]:
    """Each flowfleet metric name the dashboard and the alert rules use, and where."""
    used: dict[str, set[str]] = {}
    for query in [*dashboard_queries(), *rule_queries()]:
        for name in metric_names(query.expr) - SCRAPED_ELSEWHERE:
            used.setdefault(name, set()).add(query.where)
    for name in variable_metrics():
        used.setdefault(name, set()).add("dashboard variable flow")
    return used


#: How every runbook_url starts: the operator's base (an external label), else the compose stack's runbook server.
RUNBOOK_URL_PREFIX = "{{ with $externalLabels.runbook_base_url }}{{ . }}{{ else }}http://localhost:8701{{ end }}/"


def runbook_target(rule: dict[str, Any]) -> tuple[Path, str]:
    """The runbook file and heading anchor an alert's runbook_url opens (below the runbooks' base)."""
    url = str(rule["annotations"]["runbook_url"])
    assert url.startswith(RUNBOOK_URL_PREFIX), f"{rule['alert']}: runbook_url does not start with the base: {url}"
    file, _, anchor = url.removeprefix(RUNBOOK_URL_PREFIX).partition("#")
    return RUNBOOKS / file, anchor
