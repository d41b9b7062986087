"""The console's buttons go through the CLI's own code: dry run, replay, repair, discard, restore, and the audit log."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from tests.support.dead_letters import negative_quantity, refused_orders
from tests.support.fleet_run import Cli, FleetRun
from tests.workers.console.conftest import Browser, ErpRules
from workers.store.tables import dead_letter_actions, dead_letters

REASON = "ERP fixed the export bug (INC-7)"


def _status(engine: Engine, record: int) -> str:
    with engine.connect() as connection:
        return str(connection.execute(select(dead_letters.c.status).where(dead_letters.c.id == record)).scalar_one())


def test_a_group_is_dry_run_then_replayed_with_a_canary_and_the_outcomes_are_shown(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules, published: list[tuple[str, str]], engine: Engine
) -> None:
    ids = refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    fingerprint = fleet.dead_letters()[0]["fingerprint"]

    preview = operator.get(f"/replay?group={fingerprint}").text
    assert "Dry run: 3 open dead letter(s) selected; nothing was sent" in preview
    assert 'class="verdict-would_pass">3<' in preview
    assert published == [] and all(_status(engine, i) == "open" for i in ids)

    started = operator.post("/replay", {"group": fingerprint, "canary": "1", "rate": "50", "reason": REASON})
    assert started.status_code == 303
    action_url = started.headers["location"]
    state = operator.finished(action_url)
    assert state["status"] == "finished" and state["outcomes"]["applied"] == 3
    assert len(published) == 3 and all(_status(engine, i) == "resolved" for i in ids)
    page = operator.get(action_url).text  # what a reload shows
    assert "finished" in page and "olga" in page and REASON in page and "applied 3" in page
    assert f'href="/actions/{action_url.rsplit("/", 1)[1]}"' in operator.get(f"/groups/{fingerprint}").text


def test_a_replay_selects_on_the_server_by_filter_and_needs_a_reason(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules, published: list[tuple[str, str]]
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2")
    fleet.run(negative_quantity("ORD-3"))
    assert operator.post("/replay", {"stage": "handler"}).status_code == 400  # no reason
    assert operator.post("/replay", {"reason": REASON}).status_code == 400  # no selection
    started = operator.post("/replay", {"stage": "handler", "reason": REASON, "ids": "1,2,3"})
    state = operator.finished(started.headers["location"])
    assert state["outcomes"]["applied"] == 2 and len(published) == 2  # posted ids are ignored


def test_the_same_replay_shows_in_the_cli_audit_log_under_the_console_user(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules, cli: Cli
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1")
    started = operator.post("/replay", {"order_id": "ORD-1", "reason": REASON})
    operator.finished(started.headers["location"])
    [action] = cli("dlq", "actions", "--json").json()["items"]
    assert action["actor"] == "olga" and action["kind"] == "replay" and action["reason"] == REASON


def test_a_repair_previews_its_diff_and_the_contracts_verdict_then_sends_the_edited_copy(
    operator: Browser, fleet: FleetRun, published: list[tuple[str, str]], engine: Engine
) -> None:
    fleet.run(negative_quantity("ORD-4", email="ana.secret@example.com"))
    [record] = [r["id"] for r in fleet.dead_letters()]
    bad = json.dumps([{"op": "replace", "path": "/lines/0/quantity", "value": -1}])
    refused = operator.post(f"/records/{record}/repair/preview", {"patch": bad})
    assert refused.status_code == 422 and "The contract refuses this edit" in refused.text
    assert "lines.0.quantity" in refused.text
    good = json.dumps([{"op": "replace", "path": "/lines/0/quantity", "value": 2}])
    preview = operator.post(f"/records/{record}/repair/preview", {"patch": good, "reason": "typo, shop confirmed"})
    assert preview.status_code == 200 and "The edit passes contract order.created v2" in preview.text
    assert '<span class="del">-      &#34;quantity&#34;: -3,</span>' in preview.text
    assert '<span class="add">+      &#34;quantity&#34;: 2,</span>' in preview.text
    assert "ana.secret@example.com" not in preview.text and published == []

    sent = operator.post(f"/records/{record}/repair", {"patch": good, "reason": "typo, shop confirmed"})
    state = operator.finished(sent.headers["location"])
    assert state["status"] == "finished" and state["outcomes"]["applied"] == 1
    assert fleet.orders()["ORD-4"]["status"] in {"reserved", "backordered", "partially_reserved"}
    assert _status(engine, record) == "resolved"
    assert "repair" in operator.get("/actions?actor=olga").text


def test_discard_then_restore_are_audited_moves_by_the_user(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules, engine: Engine
) -> None:
    [one, other] = refused_orders(fleet, erp_rules, "ORD-1", "ORD-2")
    assert operator.post("/discard", {"reason": "test orders"}).status_code == 400  # selects nothing: refused
    moved = operator.post("/discard", {"order_id": "ORD-1", "reason": "test orders"})
    assert moved.status_code == 303
    assert _status(engine, one) == "discarded" and _status(engine, other) == "open"
    assert "Restore (reopen)" in operator.get(f"/records/{one}").text
    restored = operator.post(f"/records/{one}/restore", {"reason": "not a test order after all"})
    assert restored.status_code == 303 and _status(engine, one) == "open"
    with engine.connect() as connection:
        rows = connection.execute(select(dead_letter_actions.c.kind, dead_letter_actions.c.actor)).all()
    assert [tuple(row) for row in rows] == [("discard", "olga"), ("restore", "olga")]
    log = operator.get("/actions").text
    assert log.count('class="actor">olga<') == 2


def test_an_interrupted_replay_is_resumed_from_its_page(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules, engine: Engine
) -> None:
    ids = refused_orders(fleet, erp_rules, "ORD-1", "ORD-2")
    with engine.begin() as connection:
        action_id = connection.execute(
            dead_letter_actions.insert()
            .values(
                kind="replay",
                actor="someone",
                reason=REASON,
                started_at=fleet.dead_letters()[0]["archived_at"],
                status="interrupted",
                selection={"ids": ids, "status": None},
                cutoff=None,
                options={"wait": 5.0},
                counts={},
            )
            .returning(dead_letter_actions.c.id)
        ).scalar_one()
    assert "Resume this replay" in operator.get(f"/actions/{action_id}").text
    resumed = operator.post(f"/actions/{action_id}/resume", {})
    assert resumed.status_code == 303
    state = operator.finished(f"/actions/{action_id}")
    assert state["status"] == "finished" and state["outcomes"]["applied"] == 2
