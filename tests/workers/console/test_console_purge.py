"""Purge from the console is `dlq purge`: admin only, closed records before a date, chosen on the server, audited."""

from __future__ import annotations

from sqlalchemy import Engine, select

from tests.support.dead_letters import refused_orders
from tests.support.fleet_run import Cli, FleetRun
from tests.workers.console.conftest import Browser, ErpRules
from workers.store.tables import dead_letters


def _ids(engine: Engine) -> set[int]:
    with engine.connect() as connection:
        return {int(i) for i in connection.execute(select(dead_letters.c.id)).scalars()}


def test_an_admin_purges_closed_records_only_and_the_audit_log_names_them(
    admin: Browser, operator: Browser, fleet: FleetRun, erp_rules: ErpRules, engine: Engine, cli: Cli
) -> None:
    [closed, still_open] = refused_orders(fleet, erp_rules, "ORD-1", "ORD-2")
    assert operator.post("/discard", {"order_id": "ORD-1", "reason": "test order"}).status_code == 303
    preview = admin.get("/purge?resolved_before=2099-01-01")
    assert (
        preview.status_code == 200
        and "1 closed dead letter(s)" in preview.text
        and _ids(engine)
        == {
            closed,
            still_open,
        }
    )

    purged = admin.post("/purge", {"resolved_before": "2099-01-01", "reason": "retention (30 days)", "ids": "2"})
    assert purged.status_code == 303
    assert _ids(engine) == {still_open}, "only the discarded one goes; posted ids are ignored"
    [action] = [a for a in cli("dlq", "actions", "--json").json()["items"] if a["kind"] == "purge"]
    assert action["actor"] == "ada" and action["reason"] == "retention (30 days)"
    assert action["counts"]["purged"] == 1
    assert 'class="actor">ada<' in admin.get(purged.headers["location"]).text


def test_an_operator_and_a_viewer_cannot_purge(
    operator: Browser, viewer: Browser, fleet: FleetRun, erp_rules: ErpRules, engine: Engine
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-1")
    operator.post("/discard", {"order_id": "ORD-1", "reason": "test order"})
    for who in (operator, viewer):
        assert who.post("/purge", {"resolved_before": "2099-01-01", "reason": "r"}).status_code == 403
        assert who.get("/purge?resolved_before=2099-01-01").status_code == 403
        assert 'href="/purge"' not in who.get("/").text
    assert _ids(engine) == {record}


def test_a_purge_needs_a_date_and_a_reason(admin: Browser, engine: Engine) -> None:
    assert admin.post("/purge", {"reason": "r"}).status_code == 400
    assert admin.post("/purge", {"resolved_before": "2099-01-01"}).status_code == 400
    assert admin.post("/purge", {"resolved_before": "someday", "reason": "r"}).status_code == 400
    assert admin.get("/purge?resolved_before=99999999999d").status_code == 400
