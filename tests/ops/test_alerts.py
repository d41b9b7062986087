"""The alert rules pass `promtool check rules` and their unit tests; each says how bad it is and where to read on."""

from __future__ import annotations

import yaml

from tests.support.observability import ALERT_TESTS, ALERTS, RUNBOOK_URL_PREFIX, alert_rules, run_promtool

#: What the issue asks the fleet to page or warn about, and the rule that does.
REQUIRED = {
    "a flow's queue backing up": "FlowfleetQueueBackingUp",
    "no consumers on a flow": "FlowfleetNoConsumers",
    "dead-letter inflow": "FlowfleetDeadLetterInflow",
    "a failure fingerprint never seen before": "FlowfleetNewFailureFingerprint",
    "oldest dead letter older than its objective": "FlowfleetDeadLetterOlderThanObjective",
    "retry storm": "FlowfleetRetryStorm",
    "downstream error rate": "FlowfleetDownstreamErrors",
    "event lag": "FlowfleetEventLag",
    "replay stalled": "FlowfleetReplayStalled",
    "a delivery backlog older than the system's objective": "FlowfleetDeliveryBacklogOlderThanObjective",
    "a system paused for longer than planned": "FlowfleetDownstreamPausedTooLong",
    "a circuit breaker open": "FlowfleetDownstreamCircuitOpen",
    "a reconciliation mismatch": "FlowfleetDeliveriesUnconfirmed",
    "a worker target down": "FlowfleetWorkerDown",
    "a worker's processes dropping": "FlowfleetWorkerProcessesDropped",
    "dead letters piling up undrained in .XQ": "FlowfleetDeadLettersUndrained",
    "a RabbitMQ memory or disk alarm": "FlowfleetBrokerAlarm",
    "handler latency": "FlowfleetHandlerSlow",
}


def test_the_alert_rules_pass_promtool_check() -> None:
    checked = run_promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = run_promtool("test", "rules", str(ALERT_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_situation_the_issue_names_has_an_alert() -> None:
    names = {rule["alert"] for rule in alert_rules()}

    assert set(REQUIRED.values()) <= names, set(REQUIRED.values()) - names


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert annotations["description"].strip(), rule["alert"]
        assert annotations["runbook_url"].startswith(RUNBOOK_URL_PREFIX + "alerts/"), rule["alert"]


def test_every_alert_fires_in_at_least_one_unit_test() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}

    assert {rule["alert"] for rule in alert_rules()} <= fired
