"""The read pages show what the archive holds, masked, at stable URLs: overview, groups, records, one record."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.support.dead_letters import negative_quantity, refused_orders
from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun
from tests.workers.console.conftest import Browser, ErpRules
from workers.console import queues
from workers.delivery.fake import FakeDownstream
from workers.settings import Settings
from workers.store.archive.records import archive
from workers.store.archive.status import OPEN
from workers.store.tables import deliveries

SECRET = "ana.secret@example.com"


def test_the_overview_counts_open_dead_letters_per_flow_and_stage(
    viewer: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2")
    fleet.run(negative_quantity("ORD-3"))
    page = viewer.get("/").text
    orders_row = page[page.index('href="/records?flow=orders"') :].split("</tr>")[0]
    assert ">3<" in orders_row  # open in all
    assert 'href="/records?flow=orders&amp;stage=handler">2<' in orders_row
    assert 'href="/records?flow=orders&amp;stage=contract">1<' in orders_row
    assert orders_row.rstrip().endswith("<td>2</td>"), "two fingerprints first seen within the hour"
    assert "erp" in page and "channels" in page  # the downstream systems


def test_groups_link_each_fingerprint_with_its_count_sample_and_runbook_masked(
    viewer: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:
    refused_orders(fleet, erp_rules, "ORD-1", "ORD-2", email=SECRET)
    fleet.run(negative_quantity("ORD-3", email=SECRET))
    fingerprints = {r["fingerprint"] for r in fleet.dead_letters()}
    page = viewer.get("/groups").text
    for fingerprint in fingerprints:
        assert f'href="/groups/{fingerprint}"' in page
    assert "runbooks/orders.md" in page and SECRET not in page
    assert "integration team (flowfleet)</td>" in page and "the publishing team named" in page  # owners
    handler = next(r["fingerprint"] for r in fleet.dead_letters() if r["stage"] == "handler")
    group = viewer.get(f"/groups/{handler}").text
    assert "open dead letters</dt><dd>2</dd>" in group
    assert f'href="/replay?group={handler}"' in group and SECRET not in group
    assert 'owner</dt><dd class="owner">integration team (flowfleet) (#flowfleet-oncall' in group


def test_records_are_found_by_business_key_and_by_every_selector(
    viewer: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:
    [stuck] = refused_orders(fleet, erp_rules, "ORD-1234")
    fleet.run(negative_quantity("ORD-9999"))

    def ids(query: str) -> set[str]:
        page = viewer.get("/records" + query)
        assert page.status_code == 200, page.text
        return set(re.findall(r'<a href="/records/(\d+)">', page.text))

    assert ids("?order_id=ORD-1234") == {str(stuck)}
    assert len(ids("")) == 2
    assert len(ids("?stage=contract")) == 1 and len(ids("?stage=handler&contract=order.created&version=2")) == 1
    assert len(ids("?error_type=PermanentError&flow=orders")) == 1
    assert len(ids("?since=1h")) == 2 and ids("?until=1h") == set()
    assert ids("?status=discarded") == set() and len(ids("?status=any")) == 2
    assert viewer.get("/records?stage=nonsense").status_code == 400
    assert viewer.get("/records?version=two").status_code == 400
    assert viewer.get("/records?since=99999999999d").status_code == 400  # beyond the calendar: refused, not a 500


def test_the_records_list_pages_by_cursor_through_a_large_archive(viewer: Browser, engine: Engine) -> None:
    moment = datetime.now(UTC)
    with engine.begin() as connection:
        for n in range(120):
            archive(connection, _record(n, moment))
    first = viewer.get("/records").text
    assert "120 dead letter(s) match" in first
    cursor = re.search(r'href="/records\?before=(\d+)"', first)
    assert cursor is not None
    second = viewer.get(f"/records?before={cursor.group(1)}").text
    third_cursor = re.search(r'href="/records\?before=(\d+)"', second)
    assert third_cursor is not None
    third = viewer.get(f"/records?before={third_cursor.group(1)}").text
    seen = [re.findall(r'<a href="/records/(\d+)">', page) for page in (first, second, third)]
    assert [len(page) for page in seen] == [50, 50, 20]
    assert len({i for page in seen for i in page}) == 120
    assert "Older" not in third


def test_a_record_shows_envelope_headers_error_and_history_with_personal_data_masked(
    viewer: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-5", email=SECRET)
    page = viewer.get(f"/records/{record}").text
    assert "ORD-5" in page and "PermanentError" in page and "erp POST /orders answered 400" in page
    assert "order_id=ORD-5" in page and "archived" in page  # business keys and the history
    assert "decides: retry, repair, escalate" in page, "the handler stage's owner and its decisions"
    assert SECRET not in page and "Zoë" not in page and "***" in page
    assert viewer.get("/records/999999").status_code == 404


def _record(n: int, moment: datetime) -> dict[str, object]:
    return {
        "flow": "orders",
        "queue": "orders",
        "stage": "contract",
        "contract": "order.created",
        "version": 2,
        "message_id": f"m-{n}",
        "dead_letter_key": f"key-{n}",
        "dedup_key": f"ORD-{n}",
        "business_keys": {"order_id": f"ORD-{n}"},
        "error_type": "ValidationError",
        "error_message": "data.lines.0.quantity: must be positive",
        "field_paths": ["data.lines.0.quantity"],
        "traceback": None,
        "attempts": 1,
        "first_failed_at": moment,
        "last_failed_at": moment,
        "archived_at": moment,
        "body": envelope({"order_id": f"ORD-{n}"}),
        "headers": {},
        "fingerprint": "f" * 16,
        "status": OPEN,
        "search_keys": [("order_id", f"ORD-{n}")],
    }


def test_the_overview_shows_each_flows_queue_depth_when_a_management_api_is_configured(
    viewer: Browser, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Queue depth: set FLOWFLEET_MANAGEMENT_URL" in viewer.get("/").text

    class Management:
        def __init__(self, _url: str, *, timeout: float) -> None:
            self.timeout = timeout

        def queue_stats(self, vhost: str) -> dict[str, dict[str, int]]:
            assert vhost == "/"
            return {"orders": {"messages_ready": 1234, "messages_unacknowledged": 7}}

        def close(self) -> None:
            pass

    monkeypatch.setattr(queues, "ManagementApi", Management)
    monkeypatch.setattr(settings, "management_url", SecretStr("http://guest:guest@127.0.0.1:15672"))
    page = viewer.get("/").text
    assert "<td>1234 / 7</td>" in page and "<td>0 / 0</td>" in page


def test_a_record_lists_the_deliveries_its_event_caused(
    viewer: Browser, fleet: FleetRun, erp_rules: ErpRules, engine: Engine
) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-77")
    message_id = fleet.dead_letters()[0]["message_id"]
    moment = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            deliveries.insert().values(
                system="channels",
                method="POST",
                path="/availability",
                body={"sku": "MUG-BLUE"},
                idempotency_key="k-1",
                ordering_key="MUG-BLUE",
                flow="orders",
                contract="order.created",
                version=2,
                message_id=message_id,
                dedup_key="ORD-77",
                business_keys={"order_id": "ORD-77"},
                status="pending",
                created_at=moment,
                next_attempt_at=moment,
                attempts=2,
                throttles=0,
                last_error="channels answered 503",
            )
        )
    page = viewer.get(f"/records/{record}").text
    assert "<code>POST /availability</code>" in page and "channels answered 503" in page


def test_the_record_of_a_refused_delivery_lists_every_delivery_its_event_caused(
    viewer: Browser, fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = lambda _path, payload, _key, _attempt: 400 if payload.get("order_id") == "ORD-88" else 200
    fleet.run(envelope(order_v2("ORD-88", [("MUG-BLUE", 1)])))
    [dead] = fleet.dead_letters()
    assert dead["stage"] == "delivery"
    page = viewer.get(f"/records/{dead['id']}").text
    caused = page[page.index("<h2>Deliveries the event caused</h2>") :].split("</table>")[0]
    rows = re.findall(r"<tr><td>\d+</td><td>(\w+)</td><td><code>POST ([^<]+)</code></td><td>(\w+)</td>", caused)
    assert ("erp", "/orders", "dead_lettered") in rows
    assert len(rows) >= 2 and {system for system, _path, _status in rows} >= {"erp", "channels"}, rows
