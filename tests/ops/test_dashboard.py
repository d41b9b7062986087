"""The Grafana dashboard is provisionable, leads with a summary, draws alert levels and links, and its PromQL parses.

That each metric it names is produced by a real worker and exporter is checked against a real scrape
in tests/integration/test_observability.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.observability import (
    RUNBOOKS,
    alert_rules,
    check_expressions,
    dashboard,
    dashboard_queries,
    metric_names,
    panels,
    used_metric_names,
    variable_metrics,
)

#: Metrics without a flow label: panels over them cannot follow the flow variable.
FLOWLESS = {
    "flowfleet_worker_processes",
    "flowfleet_exporter_up",
    "flowfleet_exporter_collect_seconds",
    "flowfleet_downstream_requests_total",
    "flowfleet_deliveries_pending",
    "flowfleet_deliveries_in_flight",
    "flowfleet_delivery_oldest_pending_seconds",
    "flowfleet_delivery_objective_seconds",
    "flowfleet_deliveries_total",
    "flowfleet_deliveries_unconfirmed",
    "flowfleet_downstream_paused",
    "flowfleet_downstream_paused_since_timestamp_seconds",
    "flowfleet_downstream_paused_until_timestamp_seconds",
    "flowfleet_downstream_circuit_open",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROMETHEUS = RUNBOOKS.parent / "ops" / "prometheus" / "prometheus.yml"


def test_the_dashboard_takes_its_datasource_and_flow_as_template_variables() -> None:
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    assert board["uid"] == "flowfleet"
    assert "id" not in board or board["id"] is None, "a provisioned dashboard carries no database id"
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["flow"]["type"] == "query"
    assert variables["flow"]["datasource"] == DATASOURCE
    assert variables["flow"]["includeAll"] and variables["flow"]["multi"]
    assert variable_metrics() == {"flowfleet_queue_info"}


def test_every_panel_and_target_reads_the_datasource_variable() -> None:
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panel_ids_are_unique_and_every_panel_has_a_place_a_title_and_a_description() -> None:
    ids = [panel["id"] for panel in panels()]

    assert len(ids) == len(set(ids))
    for panel in panels():
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["title"]
        assert panel["type"] == "row" or panel["description"], f"panel {panel['title']!r} says nothing about itself"


def test_every_query_over_a_flow_metric_follows_the_flow_variable() -> None:
    for panel in panels():
        for target in panel.get("targets", []):
            if metric_names(target["expr"]) - FLOWLESS:
                assert 'flow=~"$flow"' in target["expr"], f"{panel['title']!r} ignores the flow variable"


def test_the_dashboard_shows_what_operators_watch() -> None:
    used = used_metric_names()

    for name in (
        "flowfleet_queue_messages",
        "flowfleet_queue_consumers",
        "flowfleet_messages_total",
        "flowfleet_dead_letters_open",
        "flowfleet_dead_letter_oldest_seconds",
        "flowfleet_dead_letter_new_fingerprints",
        "flowfleet_handler_seconds_bucket",
        "flowfleet_event_lag_seconds_bucket",
        "flowfleet_downstream_requests_total",
        "flowfleet_replays_total",
        "flowfleet_stale_events_total",
        "flowfleet_deliveries_pending",
        "flowfleet_delivery_oldest_pending_seconds",
        "flowfleet_deliveries_total",
        "flowfleet_downstream_paused",
        "flowfleet_downstream_circuit_open",
        "flowfleet_deliveries_unconfirmed",
    ):
        assert any(where.startswith("panel") for where in used.get(name, ())), f"no panel shows {name}"
    queries = " ".join(query.expr for query in dashboard_queries())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(flowfleet_handler_seconds_bucket" in queries
        assert f"histogram_quantile({quantile}, sum by (le) (rate(flowfleet_event_lag_seconds_bucket" in queries


def test_every_panel_expression_parses(tmp_path: Path) -> None:
    queries = dashboard_queries()

    checked = check_expressions(queries, tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    from tests.support.observability import Query

    checked = check_expressions([Query("a typo", "sum by (flow (rate(flowfleet_messages_total[5m]))")], tmp_path)

    assert checked.returncode != 0


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (flow) (rate(flowfleet_messages_total{outcome="retried", flow=~"a|b"}[5m]))',
            {"flowfleet_messages_total"},
        ),
        (
            'sum by (flow) (flowfleet_queue_messages{state="ready"} * on (queue) group_left (flow) '
            'flowfleet_queue_info{role="work"}) > 1000',
            {"flowfleet_queue_messages", "flowfleet_queue_info"},
        ),
        (
            "histogram_quantile(0.95, sum by (flow, le) (rate(flowfleet_event_lag_seconds_bucket[10m]))) > 3e2",
            {"flowfleet_event_lag_seconds_bucket"},
        ),
        (
            "(min by (source) (up) == 0) or absent(flowfleet_exporter_up) unless vector(1)",
            {"up", "flowfleet_exporter_up"},
        ),
        ("x:recorded:rate5m offset 5m and bool flowfleet_a", {"x:recorded:rate5m", "flowfleet_a"}),
        ('label_replace(flowfleet_b, "dst", "$1", "src", "(.*)")', {"flowfleet_b"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- what an on-call reads first: summary, alert levels, links, variables, axes ----------------------------

#: Panels drawn against an alert: (panel title, alert). Their red threshold is the alert's level.
ALERT_PANELS = {
    "Ready messages per flow": "FlowfleetQueueBackingUp",
    "Consumers per work queue": "FlowfleetNoConsumers",
    "Dead letters in the last 15 minutes": "FlowfleetDeadLetterInflow",
    "Oldest dead letter, share of its objective": "FlowfleetDeadLetterOlderThanObjective",
    "Retries per finished message": "FlowfleetRetryStorm",
    "Handler latency p95 per flow": "FlowfleetHandlerSlow",
    "Event lag p95 per flow": "FlowfleetEventLag",
}
ALL_FLOWS = "all flows"


def _panel(title: str) -> dict[str, Any]:
    found = [panel for panel in panels() if panel["title"] == title]
    assert len(found) == 1, f"expected one panel titled {title!r}, found {len(found)}"
    return found[0]


def _rule(alert: str) -> dict[str, Any]:
    return next(rule for rule in alert_rules() if rule["alert"] == alert)


def alert_level(expr: str) -> tuple[str, float]:
    """The comparison an alert fires on and its level: `> 1000` at the end, or one series `> on (...)` another (1)."""
    trailing = re.search(r"(==|>|<)\s*(\d+(?:\.\d+)?)\s*$", expr.strip())
    if trailing:
        return trailing.group(1), float(trailing.group(2))
    assert re.search(r"\)\s*>\s*on\s*\(", expr), f"no level to read from {expr!r}"
    return ">", 1.0  # series over series: the panel shows their ratio, at 1


def red_from(panel: dict[str, Any]) -> tuple[float | None, float | None]:
    """Where a panel's thresholds turn red: (from, up to), None meaning unbounded."""
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    colours = [(step["value"], step["color"]) for step in steps]
    if colours[0][1] == "red":
        return None, colours[1][0]
    return next(value for value, colour in colours if colour == "red"), None


def _rows() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each top-level row with the panels under it (by position), in order."""
    ordered = sorted(dashboard()["panels"], key=lambda panel: (panel["gridPos"]["y"], panel["gridPos"]["x"]))
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for panel in ordered:
        if panel["type"] == "row":
            rows.append((panel, list(panel.get("panels", []))))
        else:
            assert rows, f"panel {panel['title']!r} sits above the first row"
            rows[-1][1].append(panel)
    return rows


def test_a_summary_row_at_the_top_says_in_business_words_whether_each_flow_is_healthy() -> None:
    row, summary = _rows()[0]
    queries = {panel["title"]: " ".join(target["expr"] for target in panel["targets"]) for panel in summary}

    assert row["title"].startswith("Summary") and row["gridPos"]["y"] == 0
    orders = queries["Orders reserved per minute"]
    assert 'flow="orders"' in orders and 'contract="order.created"' in orders and 'outcome="processed"' in orders
    assert orders.rstrip().endswith("* 60"), "per minute, not per second"
    assert metric_names(queries[f"Delivery backlog per downstream system ({ALL_FLOWS})"]) == {
        "flowfleet_deliveries_pending",
        "flowfleet_deliveries_in_flight",
    }
    assert "by (system)" in queries[f"Delivery backlog per downstream system ({ALL_FLOWS})"]
    assert metric_names(queries["Open dead letters"]) == {"flowfleet_dead_letters_open"}
    assert "flowfleet_dead_letter_oldest_seconds" in metric_names(queries["Oldest dead letter, share of its objective"])
    assert all(panel["type"] == "stat" for panel in summary), "one number each, readable at a glance"


@pytest.mark.parametrize(("title", "alert"), sorted(ALERT_PANELS.items()))
def test_a_panel_drawn_against_an_alert_turns_red_at_the_alert_level_and_links_its_runbook(
    title: str, alert: str
) -> None:
    panel, rule = _panel(title), _rule(alert)
    comparison, level = alert_level(rule["expr"])

    red_low, red_high = red_from(panel)
    if comparison == "==":  # red at exactly the level (no consumers): red below the next whole number
        assert (red_low, red_high) == (None, level + 1), title
    else:
        assert (red_low, red_high) == (level, None), f"{title}: red from {red_low}, {alert} fires above {level}"
    panel_metrics = {name for target in panel["targets"] for name in metric_names(target["expr"])}
    assert panel_metrics <= metric_names(rule["expr"]), f"{title} shows something else than {alert} watches"
    slug = re.search(r"/alerts/([\w-]+)\.md", rule["annotations"]["runbook_url"])
    assert slug and (RUNBOOKS / "alerts" / f"{slug.group(1)}.md").is_file()
    assert {"title": f"Runbook: {alert}", "url": f"${{runbook_base}}/alerts/{slug.group(1)}.md#meaning"} in [
        {"title": link["title"], "url": link["url"]} for link in panel["links"]
    ]


def test_only_panels_drawn_against_an_alert_carry_thresholds() -> None:
    with_thresholds = {
        panel["title"] for panel in panels() if "thresholds" in panel.get("fieldConfig", {}).get("defaults", {})
    }

    assert with_thresholds == set(ALERT_PANELS), "a threshold no alert shares misleads the on-call"


def test_a_level_is_read_from_each_kind_of_alert_expression() -> None:
    assert alert_level("sum by (flow) (x) > 1000") == (">", 1000.0)
    assert alert_level("max by (flow) (x) == 0\n") == ("==", 0.0)
    assert alert_level("max by (flow) (a) > on (flow) b") == (">", 1.0)
    with pytest.raises(AssertionError):
        alert_level("absent(x)")


def test_links_open_the_runbooks_and_the_console_from_base_urls_set_once() -> None:
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    links = [link["url"] for link in board["links"]]
    links += [link["url"] for panel in panels() for link in panel.get("links", [])]

    board_links = [link["url"] for link in board["links"]]
    assert any(url.startswith("${runbook_base}/") for url in board_links)
    assert any(url.startswith("${console_base}/") for url in board_links)
    for url in links:
        used = set(re.findall(r"\$\{(\w+)\}", url))
        assert used and used <= set(variables), f"{url}: links are built from the base URL variables"
        page = re.match(r"\$\{runbook_base\}/([\w/.-]+\.md)", url)
        assert page is None or (RUNBOOKS / page.group(1)).is_file(), f"{url} names no runbook"
    # The same defaults as the alerts' links (alerts.yml) and the compose stack's external labels.
    prometheus = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))["global"]["external_labels"]
    assert variables["runbook_base"]["query"] == prometheus["runbook_base_url"]
    assert variables["console_base"]["query"] == prometheus["console_url"]
    assert variables["runbook_base"]["type"] == variables["console_base"]["type"] == "textbox"


def test_a_panel_claims_the_flow_variable_only_where_every_query_applies_it() -> None:
    for row, members in _rows():
        for panel in members:
            exprs = [target["expr"] for target in panel["targets"]]
            if ALL_FLOWS in row["title"] or ALL_FLOWS in panel["title"]:
                assert not any("$flow" in expr for expr in exprs), f"{panel['title']!r} says all flows"
                assert all(not metric_names(expr) - FLOWLESS for expr in exprs), panel["title"]
            else:
                assert all('flow=~"$flow"' in expr for expr in exprs), (
                    f"{panel['title']!r} (row {row['title']!r}) shows the Flow variable and ignores it: "
                    f"apply it, or say {ALL_FLOWS!r} in the title"
                )


def axis_kind(expr: str) -> str:
    """What a query's numbers are: a ratio (one series divided by another), a rate, or a level."""
    if re.search(r"\)\s*/\s*(?:on\s*\([^)]*\)\s*)?\w", expr):
        return "ratio"
    return "rate" if re.search(r"\b(?:rate|irate|increase)\(", expr) else "level"


def test_a_rate_and_a_ratio_never_share_one_axis() -> None:
    for panel in panels():
        kinds = {axis_kind(target["expr"]) for target in panel.get("targets", [])}
        assert not {"rate", "ratio"} <= kinds, f"{panel['title']!r} draws a rate and a ratio on one axis"
    assert axis_kind("sum(rate(a[5m])) / sum(rate(b[5m]))") == "ratio"
    assert axis_kind("max by (flow) (a) / on (flow) max by (flow) (b)") == "ratio"
    assert axis_kind("sum(rate(a[5m])) * 60") == "rate"
    assert axis_kind("sum by (flow) (a)") == "level"
