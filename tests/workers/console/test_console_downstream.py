"""Console pause and resume are `flowfleet downstream pause|resume`: operator only, same-origin, audited, relay-held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from tests.support.deliveries import open_breaker, record_delivery
from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import Cli, FleetRun
from tests.workers.console.conftest import Browser
from workers.delivery.fake import FakeDownstream
from workers.store.outbox.controls import read_control
from workers.store.tables import dead_letter_actions

REASON = "ERP upgrade 4.2 (CHG-311)"


def _actions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = select(dead_letter_actions).order_by(dead_letter_actions.c.id)
        return [dict(row) for row in connection.execute(query).mappings()]


def _paused(engine: Engine, system: str) -> bool:
    with engine.connect() as connection:
        return read_control(connection, system).paused


def test_an_operator_pauses_and_resumes_a_system_the_relay_holds_it_and_the_audit_names_the_user(
    operator: Browser, fleet: FleetRun, erp: FakeDownstream, engine: Engine
) -> None:
    paused = operator.post("/downstream/erp/pause", {"reason": REASON, "until": "2h"})
    assert paused.status_code == 303
    [pause] = _actions(engine)
    assert paused.headers["location"] == f"/actions/{pause['id']}"
    assert (pause["kind"], pause["actor"], pause["reason"], pause["selection"]) == (
        "pause",
        "olga",
        REASON,
        {"system": "erp"},
    )
    until = datetime.fromisoformat(pause["options"]["until"])
    assert timedelta(minutes=119) < until - datetime.now(UTC) <= timedelta(hours=2)

    fleet.relay.gate.forget("erp")  # the relay reads the pause again (it caches the row for a second)
    fleet.run(envelope(order_v2("ORD-PAUSED", [("MUG-BLUE", 1)])))
    assert erp.requests == [], "a paused system gets no request"
    page = operator.get("/downstream").text
    row = page[page.index('id="system-erp"') :].split("</tr>")[0]
    assert "paused by olga" in row and REASON in row and '<td class="pending">1</td>' in row

    resumed = operator.post("/downstream/erp/resume", {"reason": "upgrade done"})
    assert resumed.status_code == 303 and not _paused(engine, "erp")
    fleet.relay.gate.forget("erp")
    fleet.deliver()
    assert [path for path, _key, status in erp.requests if status == 200] == ["/orders"]
    assert [(a["kind"], a["actor"], a["counts"]["outcome"]) for a in _actions(engine)] == [
        ("pause", "olga", "paused"),
        ("resume", "olga", "resumed"),
    ]
    log = operator.get("/actions?actor=olga").text
    assert log.count('class="actor">olga<') == 2 and REASON in log


def test_a_console_pause_is_the_clis_pause(operator: Browser, cli: Cli) -> None:
    operator.post("/downstream/notify/pause", {"reason": REASON})
    [notify] = cli("downstream", "status", "--system", "notify", "--json").json()["systems"]
    assert (
        notify["paused"]["by"] == "olga" and notify["paused"]["reason"] == REASON and notify["paused"]["until"] is None
    )
    assert cli("downstream", "resume", "notify", "--reason", "done", "--actor", "ops").code == 0
    [_pause, resume] = cli("dlq", "actions", "--json").json()["items"][::-1]
    assert (resume["kind"], resume["actor"]) == ("resume", "ops")


def test_a_viewer_may_not_pause_or_resume(viewer: Browser, engine: Engine) -> None:
    assert viewer.post("/downstream/erp/pause", {"reason": REASON}).status_code == 403
    assert viewer.post("/downstream/erp/resume", {"reason": REASON}).status_code == 403
    assert "Pause" not in viewer.get("/downstream").text.split("</table>", 1)[1]  # no forms for a viewer
    assert not _paused(engine, "erp") and _actions(engine) == []


def test_a_pause_from_another_site_or_without_the_token_is_refused(operator: Browser, engine: Engine) -> None:
    cross_site = operator.post("/downstream/erp/pause", {"reason": REASON}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403 and "not from this console" in cross_site.text
    same_site = operator.post("/downstream/erp/pause", {"reason": REASON}, headers={"Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403
    other_origin = operator.post(
        "/downstream/erp/pause", {"reason": REASON}, headers={"Origin": "https://evil.example"}
    )
    assert other_origin.status_code == 403
    no_token = operator.post("/downstream/erp/pause", {"reason": REASON, "csrf_token": "0" * 64})
    assert no_token.status_code == 403
    assert not _paused(engine, "erp") and _actions(engine) == []


def test_a_pause_needs_a_known_system_a_reason_and_a_planned_end_in_the_future(
    operator: Browser, engine: Engine
) -> None:
    assert operator.post("/downstream/erp/pause", {"reason": " "}).status_code == 400
    assert operator.post("/downstream/sap/pause", {"reason": REASON}).status_code == 400
    past = operator.post("/downstream/erp/pause", {"reason": REASON, "until": "2020-01-01T06:00Z"})
    assert past.status_code == 400 and "in the past" in past.text
    assert operator.post("/downstream/erp/pause", {"reason": REASON, "until": "soon"}).status_code == 400
    for beyond_the_calendar in ("99999999999d", "9999999h", "9999-12-31T23:59-05:00", "1" * 5000 + "m"):
        too_far = operator.post("/downstream/erp/pause", {"reason": REASON, "until": beyond_the_calendar})
        assert too_far.status_code == 400 and "not a time" in too_far.text, beyond_the_calendar[:20]
    assert not _paused(engine, "erp") and _actions(engine) == []


def test_the_overview_shows_each_systems_backlog_oldest_pending_pause_and_breaker(
    viewer: Browser, operator: Browser, engine: Engine
) -> None:
    at = datetime.now(UTC)
    record_delivery(engine, now=at, age=timedelta(minutes=40), system="erp", first_failed_at=at)
    record_delivery(engine, now=at, age=timedelta(minutes=5), system="erp")
    record_delivery(engine, now=at, system="erp", status="dead_lettered")
    open_breaker(engine, "channels", opened_at=at)
    operator.post("/downstream/notify/pause", {"reason": REASON})

    page = viewer.get("/").text
    rows = {name: page[page.index(f'id="system-{name}"') :].split("</tr>")[0] for name in ("erp", "channels", "notify")}
    oldest = (at - timedelta(minutes=40)).strftime("%Y-%m-%d %H:%M")
    erp_cells = rows["erp"].split("<td")
    assert '<td class="pending">2</td>' in rows["erp"] and oldest in rows["erp"]
    assert ">1</a>" in erp_cells[7] and ">1<" in erp_cells[6]  # dead-lettered (linked), failing
    assert ">1<" in erp_cells[4]  # past erp's 15-minute objective
    assert '<td class="breaker">open</td>' in rows["channels"]
    assert "paused by olga" in rows["notify"] and REASON in rows["notify"]
    assert '<td class="paused">no</td>' in rows["erp"]
