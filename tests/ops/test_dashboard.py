"""The Grafana dashboard is provisionable, follows the flow variable, and every PromQL expression in it parses.

That each metric it names is produced by a real worker and exporter is checked against a real scrape
in tests/integration/test_observability.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.observability import (
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
