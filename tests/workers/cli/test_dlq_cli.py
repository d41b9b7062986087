"""`flowfleet dlq …` as on-call uses it, in-process on SQLite and the in-memory fleet: find, replay, repair."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun
from workers.cli.dlq import replay as dlq_replay
from workers.store.dedup import claim
from workers.store.tables import dead_letter_actions, dead_letters

SECRET = "ana.secret@example.com"
REASON = "ERP fixed the export bug (INC-7)"


@pytest.fixture
def cli(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The shared `cli`, as operator `oncall`, with the fleet's age limit."""
    monkeypatch.setenv("FLOWFLEET_MAX_EVENT_AGE_SECONDS", "3600")
    monkeypatch.setenv("FLOWFLEET_OPERATOR", "oncall")
    return cli


class Erp:
    def __init__(self, fake: PortFaults) -> None:
        self.refused: set[str] = set()
        fake.responder = self.answer

    def answer(self, _path: str, payload: Mapping[str, Any], _key: str, _attempt: int) -> int:
        return 400 if payload.get("order_id") in self.refused else 200


@pytest.fixture
def erp_rules(faults: PortFaults) -> Erp:
    """The ERP port fails inside the handler (a message-level failure, as these replay stories need)."""
    return Erp(faults)


@pytest.fixture
def published(fleet: FleetRun, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replays from the CLI go into the in-memory fleet, each copy settled before the next; returns what was sent."""
    sent: list[tuple[str, str]] = []

    class IntoTheFleet:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)
            sent.append((exchange, routing_key))
            fleet.settle()

    monkeypatch.setattr(dlq_replay, "open_publisher", lambda _settings: (IntoTheFleet(), lambda: None))
    return sent


def refused(fleet: FleetRun, rules: Erp, *order_ids: str, email: str | None = None) -> list[int]:
    """Dead letters of orders the ERP refused; their ids in the order of `order_ids`."""
    rules.refused.update(order_ids)
    fleet.run(*(envelope(order_v2(o, [("MUG-BLUE", 1)], email=email)) for o in order_ids))
    rules.refused.difference_update(order_ids)
    ids = {r["dedup_key"]: r["id"] for r in fleet.dead_letters()}
    return [ids[o] for o in order_ids]


def negative_quantity(order_id: str, *, email: str | None = None) -> bytes:
    data = order_v2(order_id, [("MUG-BLUE", 1)], email=email)
    data["lines"][0]["quantity"] = -3
    return envelope(data)


def payment_with_bad_amount(order_id: str) -> bytes:
    data = {"payment_id": f"PAY-{order_id}", "order_id": order_id, "amount_minor": -5, "currency": "EUR"}
    return envelope(data, contract="payment.authorized", version=1)


def count_actions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(dead_letter_actions)).scalar_one())


# -- finding ---------------------------------------------------------------------------------------


def test_list_finds_everything_stuck_for_one_order_across_flows_even_data_that_failed_validation(
    cli: Cli, fleet: FleetRun, erp_rules: Erp
) -> None:
    [handler] = refused(fleet, erp_rules, "ORD-1234")
    fleet.publish(payment_with_bad_amount("ORD-1234"), routing_key="payment.authorized")
    fleet.publish(negative_quantity("ORD-9999"))
    fleet.settle()

    listing = cli("dlq", "list", "--key", "order_id=ORD-1234", "--json").json()

    assert listing["total"] == 2
    assert {(item["flow"], item["stage"]) for item in listing["items"]} == {
        ("orders", "handler"),
        ("payments", "contract"),
    }
    assert handler in {item["id"] for item in listing["items"]}
    assert (
        cli("dlq", "list", "--key", "order_id=ORD-1234", "--key", "payment_id=PAY-ORD-1234", "--json").json()["total"]
        == 1
    )


def test_list_filters_by_stage_contract_version_error_type_status_and_time_and_pages(
    cli: Cli, fleet: FleetRun, erp_rules: Erp
) -> None:
    refused(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    fleet.run(negative_quantity("ORD-4"))

    def total(*args: str) -> int:
        return int(cli("dlq", "list", *args, "--json").json()["total"])

    assert total() == 4
    assert total("--stage", "contract") == 1
    assert total("--error-type", "PermanentError", "--contract", "order.created", "--version", "2") == 3
    assert total("--since", "1h") == 4 and total("--until", "1h") == 0
    assert total("--status", "discarded") == 0 and total("--status", "any") == 4
    pages = [cli("dlq", "list", "--limit", "3", "--offset", offset, "--json").json()["items"] for offset in ("0", "3")]
    assert [len(page) for page in pages] == [3, 1]
    assert cli("dlq", "list", "--status", "bogus").code == 2


def test_groups_count_each_fingerprint_with_its_times_flows_sample_and_runbook(
    cli: Cli, fleet: FleetRun, erp_rules: Erp
) -> None:
    refused(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3", email=SECRET)
    fleet.run(negative_quantity("ORD-4"), negative_quantity("ORD-5"))

    ran = cli("dlq", "groups", "--json")

    assert ran.code == 0
    groups = ran.json()["groups"]
    assert [(g["count"], g["stage"], g["error_type"]) for g in groups] == [
        (3, "handler", "PermanentError"),
        (2, "contract", "ContractViolation"),
    ]
    biggest, contract = groups
    assert biggest["flows"] == ["orders"] and biggest["runbooks"] == ["runbooks/orders.md"]
    assert "answered 400" in biggest["sample_reason"]
    assert biggest["first_seen"] <= biggest["last_seen"]
    assert contract["field_paths"] == ["data.lines.0.quantity"]
    assert (biggest["owner"]["team"], contract["owner"]["team"]) == ("integration", "publishers")
    assert "retry" in biggest["owner"]["decides"] and contract["owner"]["contact"]
    assert SECRET not in ran.out
    text = cli("dlq", "groups").out
    assert "owner: integration team (flowfleet)" in text and "owner: the publishing team" in text
    assert f"flowfleet dlq replay --group {biggest['fingerprint']} --dry-run" in text
    assert (biggest["decision"], contract["decision"]) == ("escalate", "repair")
    assert "decision: escalate (erp refused these for good (400)" in text
    assert "decision: repair" in text and "dlq repair ID --patch" in text


def test_the_dry_run_of_orders_the_erp_refused_says_they_fail_again_unless_it_changed_and_offers_a_canary(
    cli: Cli, fleet: FleetRun, erp_rules: Erp
) -> None:
    refused(fleet, erp_rules, "ORD-1", "ORD-2")
    fleet.run(negative_quantity("ORD-3"))

    report = cli("dlq", "replay", "--all", "--dry-run", "--json").json()
    text = cli("dlq", "replay", "--all", "--dry-run").out

    assert report["refused_downstream"] == {"erp": 2}
    assert "of which 2 were refused for good by erp: they will fail again unless erp changed" in text
    assert "--canary 5" in text
    assert "have the producer resend it corrected" in text and "dlq repair" in text


def test_dlq_list_shows_the_producer_and_the_business_keys(cli: Cli, fleet: FleetRun, erp_rules: Erp) -> None:
    refused(fleet, erp_rules, "ORD-1")

    text = cli("dlq", "list").out

    assert "from=storefront" in text and "order_id=ORD-1" in text


# -- replay ----------------------------------------------------------------------------------------


def test_replay_dry_run_says_what_would_pass_what_was_applied_and_what_still_fails_and_sends_nothing(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, engine: Engine, published: list[Any]
) -> None:
    passing, applied = refused(fleet, erp_rules, "ORD-1", "ORD-2")
    with engine.begin() as connection:  # applied since, by a process that closes no superseded record
        claim(connection, flow="orders", contract="order.created", dedup_key="ORD-2", message_id="m-2", version=2)
    fleet.run(negative_quantity("ORD-3"), envelope(order_v2("ORD-4"), age=timedelta(hours=2)))

    ran = cli("dlq", "replay", "--all", "--dry-run", "--json")

    assert ran.code == 0, ran.err
    report = ran.json()
    assert (report["selected"], report["would_pass"], report["already_applied"], report["still_failing"]) == (
        4,
        1,
        1,
        2,
    )
    verdicts = {item["id"]: item["verdict"] for item in report["items"]}
    assert (verdicts[passing], verdicts[applied]) == ("would_pass", "already_applied")
    assert {(r["stage"], r["count"]) for r in report["reasons"]} == {("contract", 1), ("expired", 1)}
    assert any("data.lines.0.quantity" in r["reason"] for r in report["reasons"])
    assert published == [] and count_actions(engine) == 0
    assert cli("dlq", "list", "--json").json()["total"] == 4, "nothing changed status"


def test_replay_needs_a_reason_and_a_selection(cli: Cli, fleet: FleetRun, published: list[Any]) -> None:
    assert "needs --reason" in cli("dlq", "replay", "--all").err
    assert "select what to act on" in cli("dlq", "replay", "--reason", "r").err
    assert published == []


def test_replay_of_a_group_sends_each_copy_reports_outcomes_and_show_and_actions_tell_the_story(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, published: list[Any]
) -> None:
    ids = refused(fleet, erp_rules, "ORD-1", "ORD-2")
    fingerprint = cli("dlq", "groups", "--json").json()["groups"][0]["fingerprint"]

    ran = cli("dlq", "replay", "--group", fingerprint, "--reason", REASON, "--wait", "0", "--json")

    assert ran.code == 0, ran.err
    report = ran.json()
    assert (report["status"], report["sent"], report["outcomes"]["applied"]) == ("finished", 2, 2)
    assert published == [("commerce.events", "order.created")] * 2
    shown = cli("dlq", "show", str(ids[0]), "--json").json()
    assert shown["status"] == "resolved"
    assert [(r["kind"], r["actor"], r["reason"], r["outcome"]) for r in shown["replays"]] == [
        ("replay", "oncall", REASON, "applied")
    ]
    assert [e["action"] for e in shown["history"]] == ["archived", "replayed", "replay-applied"]
    action = cli("dlq", "actions", str(report["action_id"]), "--json").json()
    assert (action["kind"], action["actor"], action["reason"], action["status"]) == (
        "replay",
        "oncall",
        REASON,
        "finished",
    )
    assert action["selection"]["fingerprint"] == fingerprint and action["cutoff"]
    assert [(m["dead_letter_id"], m["outcome"]) for m in action["messages"]] == [(i, "applied") for i in sorted(ids)]
    assert "replay" in cli("dlq", "actions").out
    again = cli("dlq", "replay", "--group", fingerprint, "--reason", REASON, "--wait", "0", "--json").json()
    assert again["selected"] == 0 and len(published) == 2, "resolved records are not replayed again"


def test_a_replay_that_fails_again_exits_non_zero_and_shows_the_new_record(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, published: list[Any]
) -> None:
    [original] = refused(fleet, erp_rules, "ORD-9")
    erp_rules.refused.add("ORD-9")

    ran = cli("dlq", "replay", str(original), "--reason", REASON, "--wait", "0")

    assert ran.code == 1
    [new] = cli("dlq", "show", str(original), "--json").json()["replayed_as"]
    assert f"failed again: #{original} -> #{new} (same fingerprint)" in ran.out
    assert cli("dlq", "show", str(new), "--json").json()["replay_of"] == original


def test_a_progress_bar_is_drawn_on_a_terminal_and_only_there(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = refused(fleet, erp_rules, "ORD-1", "ORD-2")

    piped = cli("dlq", "replay", str(first), "--reason", REASON, "--wait", "0")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    on_a_terminal = cli("dlq", "replay", str(second), "--reason", REASON, "--wait", "0")

    assert piped.code == on_a_terminal.code == 0
    assert "\r" not in piped.err and "[" not in piped.err
    assert "\rreplay #" in on_a_terminal.err and "1/1 sent" in on_a_terminal.err


def test_sigterm_stops_a_replay_after_the_message_in_hand_and_it_resumes_from_there(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = refused(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    sent: list[str] = []

    class TerminatedAfterTheFirst:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)
            sent.append(routing_key)
            fleet.settle()
            if len(sent) == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(dlq_replay, "open_publisher", lambda _settings: (TerminatedAfterTheFirst(), lambda: None))
    previous = signal.getsignal(signal.SIGTERM)

    stopped = cli("dlq", "replay", *map(str, ids), "--reason", REASON, "--wait", "0", "--json")

    assert stopped.code == 1
    assert (stopped.json()["status"], stopped.json()["sent"]) == ("interrupted", 1)
    assert signal.getsignal(signal.SIGTERM) == previous, "the handler is put back"
    resumed = cli("dlq", "replay", "--resume", str(stopped.json()["action_id"]), "--json").json()
    assert (resumed["status"], resumed["sent"], resumed["outcomes"]["applied"]) == ("finished", 2, 3)
    assert len(sent) == 3


def test_resuming_an_unknown_action_is_refused_plainly(cli: Cli, engine: Engine, published: list[Any]) -> None:
    ran = cli("dlq", "replay", "--resume", "42")

    assert ran.code == 2 and "no action #42" in ran.err


# -- repair ----------------------------------------------------------------------------------------


def test_an_edit_that_breaks_the_contract_is_refused_before_anything_is_published(
    cli: Cli, fleet: FleetRun, engine: Engine, published: list[Any]
) -> None:
    fleet.run(negative_quantity("ORD-5"))
    [record] = fleet.dead_letters()

    ran = cli(
        "dlq",
        "repair",
        str(record["id"]),
        "--patch",
        '[{"op": "replace", "path": "/lines/0/quantity", "value": 0}]',
        "--reason",
        "fix qty",
    )

    assert ran.code == 2
    assert "repair refused, nothing was sent" in ran.err and "data.lines.0.quantity" in ran.err
    assert published == [] and count_actions(engine) == 0
    assert cli("dlq", "show", str(record["id"]), "--json").json()["status"] == "open"


def test_a_repair_sends_the_edited_copy_linked_to_the_original_and_it_is_applied(
    cli: Cli, fleet: FleetRun, published: list[Any], tmp_path: Path
) -> None:
    fleet.run(negative_quantity("ORD-6", email=SECRET))
    [record] = fleet.dead_letters()
    patch = tmp_path / "fix.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/lines/0/quantity", "value": 2}]))

    dry = cli("dlq", "repair", str(record["id"]), "--patch", str(patch), "--reason", "qty typo", "--dry-run", "--json")
    assert dry.code == 0 and published == []
    assert dry.json()["verdict"] == "would_pass" and dry.json()["data"]["lines"][0]["quantity"] == 2
    assert SECRET not in dry.out

    ran = cli(
        "dlq", "repair", str(record["id"]), "--patch", str(patch), "--reason", "qty typo", "--wait", "0", "--json"
    )

    assert ran.code == 0, ran.err
    assert (ran.json()["kind"], ran.json()["outcomes"]["applied"]) == ("repair", 1)
    assert [line["quantity"] for line in fleet.order_lines("ORD-6")] == [2]
    shown = cli("dlq", "show", str(record["id"]), "--json").json()
    assert shown["status"] == "resolved"
    assert shown["envelope"]["data"]["lines"][0]["quantity"] == -3, "the original is kept as it came"
    [replay] = shown["replays"]
    assert (replay["kind"], replay["outcome"]) == ("repair", "applied")
    assert replay["edited"]["envelope"]["data"]["lines"][0]["quantity"] == 2
    assert replay["edited"]["envelope"]["message_id"] == shown["message_id"]
    assert replay["edited"]["envelope"]["data"]["customer"]["email"] == "***"
    assert [e["action"] for e in shown["history"]] == ["archived", "repaired", "replay-applied"]
    assert cli("dlq", "repair", str(record["id"]), "--patch", str(patch), "--reason", "again").code == 2


# -- discard, restore, export, purge ---------------------------------------------------------------


def test_discard_suppresses_with_a_reason_keeps_the_record_and_restore_brings_it_back(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, engine: Engine
) -> None:
    ids = refused(fleet, erp_rules, "ORD-1", "ORD-2")

    dry = cli("dlq", "discard", "--key", "order_id=ORD-1", "--reason", "test order", "--dry-run", "--json").json()
    assert (dry["ids"], count_actions(engine)) == ([ids[0]], 0)
    ran = cli("dlq", "discard", "--key", "order_id=ORD-1", "--reason", "test order", "--json")

    assert ran.code == 0 and ran.json()["ids"] == [ids[0]]
    assert cli("dlq", "list", "--json").json()["total"] == 1
    shown = cli("dlq", "show", str(ids[0]), "--json").json()
    assert shown["status"] == "discarded"
    assert (shown["history"][-1]["action"], shown["history"][-1]["actor"], shown["history"][-1]["reason"]) == (
        "discarded",
        "oncall",
        "test order",
    )
    with pytest.raises(SystemExit):
        cli("dlq", "discard", "--all")  # --reason is required

    restored = cli("dlq", "restore", str(ids[0]), str(ids[1]), "--reason", "it was real", "--json").json()

    assert (restored["ids"], restored["skipped"]) == ([ids[0]], [ids[1]])
    assert cli("dlq", "show", str(ids[0]), "--json").json()["status"] == "open"
    kinds = [a["kind"] for a in cli("dlq", "actions", "--json").json()["items"]]
    assert kinds == ["restore", "discard"]


def test_export_writes_json_lines_of_a_filter_masked_unless_asked_and_an_unmasked_export_is_recorded(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, engine: Engine, tmp_path: Path
) -> None:
    refused(fleet, erp_rules, "ORD-1", "ORD-2", email=SECRET)
    fleet.run(negative_quantity("ORD-3"))
    out = tmp_path / "evidence.jsonl"

    ran = cli("dlq", "export", "--stage", "handler", "--output", str(out))

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert ran.code == 0 and "exported 2 dead letter(s)" in ran.err
    assert sorted(line["envelope"]["data"]["order_id"] for line in lines) == ["ORD-1", "ORD-2"]
    assert all(line["history"] and line["error_message"] for line in lines)
    assert SECRET not in out.read_text() and count_actions(engine) == 0

    unmasked = cli("dlq", "export", "--key", "order_id=ORD-1", "--unmask", "--reason", "ticket SUP-9")

    assert SECRET in unmasked.out
    [action] = cli("dlq", "actions", "--json").json()["items"]
    assert (action["kind"], action["reason"], action["counts"]) == ("export", "ticket SUP-9", {"exported": 1})


def test_purge_removes_only_resolved_or_discarded_records_closed_before_the_date_and_is_audited(
    cli: Cli, fleet: FleetRun, erp_rules: Erp, engine: Engine, published: list[Any]
) -> None:
    resolved, discarded, still_open = refused(fleet, erp_rules, "ORD-1", "ORD-2", "ORD-3")
    cli("dlq", "replay", str(resolved), "--reason", "r", "--wait", "0")
    cli("dlq", "discard", str(discarded), "--reason", "r")

    nothing = cli("dlq", "purge", "--resolved-before", "1d", "--reason", "retention", "--json").json()
    assert nothing["ids"] == [], "nothing was closed a day ago"
    assert cli("dlq", "list", "--status", "any", "--json").json()["total"] == 3
    dry = cli("dlq", "purge", "--resolved-before", "2999-01-01", "--reason", "retention", "--dry-run", "--json").json()
    assert dry["ids"] == sorted([resolved, discarded])
    ran = cli("dlq", "purge", "--resolved-before", "2999-01-01", "--reason", "retention", "--json")

    assert ran.code == 0 and ran.json()["ids"] == sorted([resolved, discarded])
    with engine.connect() as connection:
        assert list(connection.execute(select(dead_letters.c.id)).scalars()) == [still_open]
    purge = cli("dlq", "actions", "--json").json()["items"][0]
    assert (purge["kind"], purge["reason"], purge["counts"]["purged"]) == ("purge", "retention", 2)
    assert purge["selection"]["ids"] == sorted([resolved, discarded])


# -- the schema ------------------------------------------------------------------------------------


def test_dlq_commands_on_an_archive_one_migration_behind_say_to_upgrade(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    from workers.store.db import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    engine.dispose()
    monkeypatch.setenv("FLOWFLEET_DATABASE_URL", url)

    ran = cli("dlq", "list")

    assert ran.code == 2 and "schema is at revision 0002" in ran.err and "flowfleet db upgrade" in ran.err
    assert cli("db", "upgrade").code == 0
    assert cli("dlq", "list").code == 0
