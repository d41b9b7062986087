"""Console export is `dlq export`: admin only, the list's filter chosen on the server, the CLI's lines, audited."""

from __future__ import annotations

from typing import Any

from tests.support.dead_letters import refused_orders
from tests.support.fleet_run import Cli, FleetRun
from tests.workers.console.conftest import BASE, Browser, ErpRules

SECRET = "jane.doe@example.com"


def _exports(cli: Cli) -> list[dict[str, Any]]:
    return [a for a in cli("dlq", "actions", "--json").json()["items"] if a["kind"] == "export"]


def test_an_admins_export_is_the_clis_export_of_the_same_filter_masked_and_audited(
    admin: Browser, fleet: FleetRun, erp_rules: ErpRules, cli: Cli
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3", email=SECRET)
    assert 'action="/export"' in admin.get("/records?order_id=ORD-2").text, "the list offers its admin the export"

    answer = admin.post("/export", {"order_id": "ORD-2", "reason": "ticket OPS-7"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.headers["cache-control"] == "no-store"
    lines = answer.text.splitlines()
    assert lines == cli("dlq", "export", "--key", "order_id=ORD-2").out.splitlines()
    assert len(lines) == 1 and "ORD-2" in lines[0] and SECRET not in answer.text

    everything = admin.post("/export", {"flow": "orders", "reason": "evidence pack"})
    assert everything.text.splitlines() == cli("dlq", "export", "--flow", "orders").out.splitlines()
    assert len(everything.text.splitlines()) == 3

    [second, first] = _exports(cli)
    assert first["actor"] == "ada" and first["reason"] == "ticket OPS-7"
    assert first["options"] == {"unmask": False, "output": "console download"}
    assert first["counts"] == {"exported": 1} and first["selection"]["keys"] == [["order_id", "ORD-2"]]
    assert second["counts"] == {"exported": 3} and second["selection"]["flow"] == "orders"


def test_an_unmasked_export_shows_personal_data_as_the_clis_does_and_says_so_in_the_audit_log(
    admin: Browser, fleet: FleetRun, erp_rules: ErpRules, cli: Cli
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", email=SECRET)
    answer = admin.post("/export", {"order_id": "ORD-1", "unmask": "yes", "reason": "customer asked"})
    assert answer.status_code == 200 and SECRET in answer.text
    cli_lines = cli("dlq", "export", "--key", "order_id=ORD-1", "--unmask", "--reason", "same").out.splitlines()
    assert answer.text.splitlines() == cli_lines
    console_row = [a for a in _exports(cli) if a["actor"] == "ada"]
    assert [(a["options"]["unmask"], a["reason"], a["counts"]) for a in console_row] == [
        (True, "customer asked", {"exported": 1})
    ]


def test_a_viewer_and_an_operator_cannot_export_and_nothing_is_recorded(
    viewer: Browser, operator: Browser, fleet: FleetRun, erp_rules: ErpRules, cli: Cli
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", email=SECRET)
    for who in (viewer, operator):
        answer = who.post("/export", {"order_id": "ORD-1", "unmask": "yes", "reason": "curious"})
        assert answer.status_code == 403 and SECRET not in answer.text and "ORD-1" not in answer.text
        assert 'action="/export"' not in who.get("/records").text
    assert _exports(cli) == []


def test_a_cross_site_or_tokenless_export_is_refused_and_a_reason_is_required(
    admin: Browser, fleet: FleetRun, erp_rules: ErpRules, cli: Cli
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", email=SECRET)
    form = {"order_id": "ORD-1", "unmask": "yes", "reason": "r"}
    cross_site = admin.post("/export", form, headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"})
    assert cross_site.status_code == 403 and SECRET not in cross_site.text
    tokenless = admin.client.post(
        "/export",
        data=form,
        **admin.credentials,
        headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"},
    )
    assert tokenless.status_code == 403 and SECRET not in tokenless.text
    assert admin.client.get("/export", **admin.credentials).status_code == 405, "no GET download"
    assert admin.post("/export", {"order_id": "ORD-1"}).status_code == 400, "an export needs a reason"
    assert _exports(cli) == []
