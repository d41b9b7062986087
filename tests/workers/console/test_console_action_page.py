"""An action's page reads as tables, not Python dicts, and only an outcome that happened is shown as bad."""

from __future__ import annotations

from tests.support.dead_letters import refused_orders
from tests.support.fleet_run import FleetRun
from tests.workers.console.conftest import Browser, ErpRules

REASON = "ERP fixed the export bug (INC-7)"


def test_the_selection_and_counts_are_tables_and_only_a_nonzero_failed_again_is_red(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    clean: str = operator.post("/replay", {"order_id": "ORD-1", "reason": REASON}).headers["location"]
    outcomes = operator.finished(clean)["outcomes"]
    assert (outcomes["applied"], outcomes["failed_again"]) == (1, 0)
    page = operator.get(clean).text
    assert "{'" not in page and "':" not in page, "no Python dict printed"
    assert '<th scope="row">keys</th><td>order_id=ORD-1</td>' in page
    assert '<th scope="row">status</th><td>any</td>' in page, "a replay reads every status"
    assert '<table class="pairs" id="counts">' in page
    assert 'class="outcome-applied">applied 1<' in page
    assert "failed_again 0" in page and 'class="outcome-failed_again"' not in page

    erp_rules.refused.add("ORD-2")
    failing = operator.post("/replay", {"order_id": "ORD-2", "reason": REASON}).headers["location"]
    assert operator.finished(failing)["outcomes"]["failed_again"] == 1
    assert 'class="outcome-failed_again">failed_again 1<' in operator.get(failing).text
    listed = operator.get("/actions").text
    assert "{'" not in listed and "applied=1" in listed
