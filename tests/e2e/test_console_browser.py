"""On-call in a real browser: the alert's link, a dry run, a replay and its outcomes, a repair, a pause, the audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support.dead_letters import negative_quantity, refused_orders
from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRun
from tests.workers.console.conftest import ErpRules
from workers.delivery.fake import FakeDownstream

SECRET = "night.owl@example.com"


def test_an_operator_replays_a_group_from_the_alert_link_repairs_a_record_and_the_audit_log_names_them(
    browser: Any, console_url: str, fleet: FleetRun, erp: FakeDownstream, faults: PortFaults, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    rules = ErpRules(faults)
    refused_orders(fleet, rules, "ORD-501", "ORD-502", "ORD-503", email=SECRET)
    fleet.run(negative_quantity("ORD-600", email=SECRET))
    records = fleet.dead_letters()
    fingerprint = next(r["fingerprint"] for r in records if r["stage"] == "handler")
    broken = next(r["id"] for r in records if r["stage"] == "contract")

    browser.goto(console_url + "/")
    browser.screenshot(path=shots / "overview.png", full_page=True)
    assert "orders" in browser.inner_text("main") and SECRET not in browser.content()
    assert browser.locator(".local-time").count() > 0  # the script added local times beside the UTC ones

    browser.goto(f"{console_url}/groups/{fingerprint}")  # the alert's deep link
    browser.screenshot(path=shots / "group.png", full_page=True)
    assert "open dead letters" in browser.inner_text("dl.facts")
    browser.click("text=Dry-run a replay of this group")
    assert "Dry run: 3 open dead letter(s) selected" in browser.inner_text("main")
    browser.screenshot(path=shots / "replay-preview.png", full_page=True)
    browser.fill("input[name=canary]", "1")
    browser.fill("input[name=reason]", "ERP export fixed (INC-88)")
    browser.click("text=Replay 3 dead letter(s)")
    browser.wait_for_url("**/actions/*")
    expect(browser.locator("#status")).to_have_text("finished", timeout=20_000)  # the page's script follows it
    browser.screenshot(path=shots / "replay-progress.png", full_page=True)
    assert "applied 3" in browser.inner_text("#outcomes")
    browser.reload()  # the progress page survives a reload
    assert browser.inner_text("#status") == "finished"

    browser.goto(f"{console_url}/records/{broken}")
    assert SECRET not in browser.content()
    browser.fill("textarea[name=patch]", json.dumps([{"op": "replace", "path": "/lines/0/quantity", "value": 1}]))
    browser.fill("input[name=reason]", "shop confirmed one mug")
    browser.click("text=Preview the repair")
    assert "The edit passes contract order.created v2" in browser.inner_text("main")
    assert browser.locator("pre.diff .add").count() == 1 and browser.locator("pre.diff .del").count() == 1
    browser.screenshot(path=shots / "repair-preview.png", full_page=True)
    browser.click("text=Send the repaired copy")
    expect(browser.locator("#status")).to_have_text("finished", timeout=20_000)  # the page's script follows it
    assert "applied 1" in browser.inner_text("#outcomes")
    assert fleet.orders()["ORD-600"]["status"] != "cancelled"

    browser.goto(console_url + "/actions?actor=olga")
    browser.screenshot(path=shots / "actions.png", full_page=True)
    log = browser.inner_text("table")
    assert log.count("olga") == 2 and "replay" in log and "repair" in log and "ERP export fixed (INC-88)" in log


def test_an_operator_pauses_and_resumes_a_downstream_system_and_the_audit_log_names_them(
    browser: Any, console_url: str, fleet: FleetRun, erp: FakeDownstream, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    browser.goto(console_url + "/downstream")
    controls = browser.locator("#control-erp")
    controls.locator("form[action$='/pause'] input[name=reason]").fill("ERP upgrade 4.2 (CHG-311)")
    controls.locator("form[action$='/pause'] input[name=until]").fill("2h")
    controls.locator("text=Pause").click()
    browser.wait_for_url("**/actions/*")
    assert browser.inner_text("dd.actor") == "olga" and "erp paused" in browser.inner_text("main")
    browser.screenshot(path=shots / "pause-action.png", full_page=True)

    fleet.relay.gate.forget("erp")  # the relay reads the pause again (it caches the row for a second)
    fleet.run(envelope(order_v2("ORD-700", [("MUG-BLUE", 1)])))
    assert erp.requests == [], "a paused ERP gets no request"
    browser.click("text=Back to the downstream systems")
    row = browser.inner_text("#system-erp")
    assert "paused by olga" in row and "ERP upgrade 4.2 (CHG-311)" in row and "planned until" in row
    browser.screenshot(path=shots / "downstream-paused.png", full_page=True)

    resume = browser.locator("#control-erp form[action$='/resume']")
    resume.locator("input[name=reason]").fill("upgrade done")
    resume.locator("text=Resume").click()
    browser.wait_for_url("**/actions/*")
    assert "erp resumed after" in browser.inner_text("main")
    fleet.relay.gate.forget("erp")
    fleet.deliver()
    assert [status for _path, _key, status in erp.requests] == [200]

    browser.goto(console_url + "/actions?actor=olga")
    browser.screenshot(path=shots / "actions-pause-resume.png", full_page=True)
    log = browser.inner_text("table")
    assert browser.locator("td.actor").all_inner_texts() == ["olga", "olga"]
    assert "pause" in log and "resume" in log and "ERP upgrade 4.2 (CHG-311)" in log and "upgrade done" in log
    browser.goto(console_url + "/")
    browser.screenshot(path=shots / "overview-after-resume.png", full_page=True)
    assert "paused by" not in browser.inner_text("#system-erp")
