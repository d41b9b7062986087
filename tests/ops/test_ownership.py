"""Every flow, downstream system and failure stage has an owner in ops/ownership.toml, and the alerts route to it."""

from __future__ import annotations

import re

import pytest

from tests.support.observability import alert_rules, runbook_target
from workers.failures import STAGES
from workers.flows import FLOWS
from workers.ownership import DECISIONS, OwnershipError, load, parse
from workers.settings import DOWNSTREAM_SYSTEMS


@pytest.mark.parametrize(
    ("kind", "keys"),
    [("flows", [flow.name for flow in FLOWS]), ("systems", list(DOWNSTREAM_SYSTEMS)), ("stages", list(STAGES))],
)
def test_every_flow_system_and_stage_has_an_owner_with_a_contact_and_a_decision(kind: str, keys: list[str]) -> None:
    ownership = load()
    for key in keys:
        owner = ownership.of(kind, key)
        assert owner is not None, f"{kind}.{key} has no owner in ops/ownership.toml"
        assert owner.contact.strip() and owner.name.strip(), f"{kind}.{key}"
        assert owner.decides and set(owner.decides) <= set(DECISIONS), f"{kind}.{key}"


def test_an_undefined_team_or_an_unknown_decision_is_refused() -> None:
    teams = {"teams": {"a": {"name": "A", "contact": "#a"}}}
    with pytest.raises(OwnershipError, match="team 'b' is not defined"):
        parse(teams | {"flows": {"orders": {"team": "b", "decides": ["retry"]}}})
    with pytest.raises(OwnershipError, match="unknown decision"):
        parse(teams | {"flows": {"orders": {"team": "a", "decides": ["ignore"]}}})


def test_a_failure_belongs_to_its_group_then_its_system_then_its_stage() -> None:
    teams = {
        "x": {"name": "X", "contact": "#x"},
        "y": {"name": "Y", "contact": "#y"},
        "z": {"name": "Z", "contact": "#z"},
    }
    ownership = parse(
        {
            "teams": teams,
            "stages": {"delivery": {"team": "x"}, "handler": {"team": "x"}},
            "systems": {"erp": {"team": "y"}},
            "groups": {"abc": {"team": "z"}},
        }
    )

    assert ownership.of_failure(flow="orders", stage="delivery", system="erp").team == "y"
    assert ownership.of_failure(flow="orders", stage="delivery", system="erp", fingerprint="abc").team == "z"
    assert ownership.of_failure(flow="orders", stage="handler", system="erp").team == "x"


def _subject(rule: dict[str, object]) -> tuple[str, str]:
    summary = str(rule["annotations"]["summary"])  # type: ignore[index]
    for kind, label in (("systems", "system"), ("stages", "stage")):
        if f"$labels.{label}" in summary:
            return kind, label
    return ("services", "service") if rule["labels"]["service"] != "flowfleet" else ("flows", "flow")  # type: ignore[index]


def test_every_alert_carries_the_team_the_ownership_file_names_for_its_subject() -> None:
    ownership = load()
    for rule in alert_rules():
        kind, label = _subject(rule)
        labels = rule["labels"]
        if kind == "services":
            owner = ownership.of("services", labels["service"])
            assert owner is not None and labels["team"] == owner.team, rule["alert"]
        else:
            assert labels["team"] == ownership.team_label(kind, label), rule["alert"]
        assert re.fullmatch(r"[a-z]+|\{\{ \$labels\.system \}\}", labels["service"]), rule["alert"]


def test_every_alert_runbook_names_the_owner_its_alert_routes_to() -> None:
    ownership = load()
    for rule in alert_rules():
        path, _anchor = runbook_target(rule)
        owner_lines = [line for line in path.read_text(encoding="utf-8").splitlines()[:4] if line.startswith("Owner: ")]
        assert owner_lines, f"{path.name} has no Owner line under its title"
        kind, _label = _subject(rule)
        keys = ownership.owners[kind] if "{{" in rule["labels"]["team"] else {}
        names = {owner.name for owner in keys.values()} or {
            owner.name
            for entries in ownership.owners.values()
            for owner in entries.values()
            if owner.team == rule["labels"]["team"]
        }
        assert all(name in owner_lines[0] for name in names), (path.name, names)
