"""`flowfleet report`: the weekly review as markdown and JSON on a seeded archive, an empty one, bad --since."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from tests.support.fleet_run import Cli
from tests.support.review_seed import (
    EXPECTED_ACTORS,
    EXPECTED_FAILURES,
    EXPECTED_RECOVERY,
    EXPECTED_UNDECIDED,
    seed_week,
)


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    with engine.begin() as connection:
        seed_week(connection, datetime.now(UTC))
    return engine


def test_the_json_review_carries_the_weeks_figures_and_the_owners(cli: Cli, seeded: Engine) -> None:
    ran = cli("report", "--since", "7d", "--json")

    assert ran.code == 0, ran.err
    found = ran.json()
    assert [
        (f["flow"], f["stage"], f["fingerprint"], f["count"], f["refailed"]) for f in found["failures"]
    ] == EXPECTED_FAILURES
    assert found["recoveries"] == [EXPECTED_RECOVERY]
    assert found["interventions_by_actor"] == EXPECTED_ACTORS
    assert found["stale_events"]["stored"] is False
    assert found["stale_events"]["query"] == "sum by (flow) (increase(flowfleet_stale_events_total[168h]))"
    assert found["systems"]["erp"]["mismatches"] == {"overdue": 1, "dead_lettered": 1}
    assert found["systems"]["erp"]["owner"]["team"] == "erp"
    undecided = {g["fingerprint"]: g for g in found["undecided_groups"]}
    assert {fp: g["open"] for fp, g in undecided.items()} == EXPECTED_UNDECIDED
    assert undecided["e"]["owner"]["team"] == "publishers", "a contract failure is the publishers' to decide"
    assert undecided["c"]["owner"]["team"] == "integration"


def test_the_markdown_review_says_the_same_in_words(cli: Cli, seeded: Engine) -> None:
    ran = cli("report", "--since", "7d")

    assert ran.code == 0, ran.err
    out = ran.out
    assert out.startswith("# Weekly operational review, ")
    assert "- **orders**: 4 dead letter(s) (contract 2, handler 2)" in out
    assert "| orders | 3 | 2.0 h | 6.0 h (#2) |" in out
    assert "- **alice**: repair 1" in out and "- **carol**: pause 1" in out
    assert "`flowfleet_stale_events_total`" in out
    assert "| erp | 1 | 1 | 1 |" in out and "dead_lettered 1, overdue 1" in out
    undecided = out.split("## Open groups without an owner's decision")[1]
    assert "| e | orders | contract |" in undecided and "| c | payments | delivery |" in undecided
    assert "| d |" not in undecided, "alice's discard decided group d"


def test_an_empty_archive_reports_an_empty_window(cli: Cli, engine: Engine) -> None:
    ran = cli("report")

    assert ran.code == 0, ran.err
    assert "No dead letters in the window." in ran.out
    assert "Nothing was resolved in the window." in ran.out
    assert "No operator action in the window." in ran.out
    assert "Every open group has had a decision." in ran.out
    found = cli("report", "--json").json()
    assert (found["failures"], found["recoveries"], found["interventions"], found["undecided_groups"]) == (
        [],
        [],
        [],
        [],
    )


@pytest.mark.parametrize("since", ["7x", "last week", "2999-01-01"])
def test_a_bad_since_is_one_clear_line(cli: Cli, engine: Engine, since: str) -> None:
    ran = cli("report", "--since", since)

    assert ran.code == 2 and ran.out == ""
    assert ran.err.count("\n") == 1 and ran.err.startswith("flowfleet: ")
    assert since in ran.err
