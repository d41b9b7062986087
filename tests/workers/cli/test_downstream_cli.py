"""`flowfleet downstream` and `flowfleet reconcile` as an operator uses them, in-process on a SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from tests.support.deliveries import open_breaker, record_delivery
from tests.support.fleet_run import Cli
from workers.cli.command import CommandError
from workers.cli.downstream import parse_until
from workers.store.outbox.status import DEAD_LETTERED, DELIVERED, SUPERSEDED
from workers.store.tables import dead_letter_actions, deliveries, downstream_controls

REASON = "ERP upgrade 4.2 (CHG-311)"


@pytest.fixture
def cli(cli: Cli, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The shared `cli` on a migrated store, as operator `oncall`."""
    monkeypatch.setenv("FLOWFLEET_OPERATOR", "oncall")
    return cli


def now() -> datetime:
    return datetime.now(UTC)


def actions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(select(dead_letter_actions).order_by(dead_letter_actions.c.id)).mappings()
        ]


def test_a_pause_shows_in_status_with_who_why_since_and_until_and_is_audited(cli: Cli, engine: Engine) -> None:
    paused = cli("downstream", "pause", "erp", "--reason", REASON, "--until", "2h", "--json")

    status = cli("downstream", "status", "--system", "erp", "--json").json()

    assert paused.code == 0, paused.err
    [erp] = status["systems"]
    assert erp["paused"]["by"] == "oncall" and erp["paused"]["reason"] == REASON
    until = datetime.fromisoformat(erp["paused"]["until"])
    assert timedelta(minutes=119) < until - datetime.fromisoformat(erp["paused"]["since"]) <= timedelta(hours=2)
    assert erp["paused"]["past_plan"] is False
    [action] = actions(engine)
    assert (action["kind"], action["actor"], action["reason"], action["selection"]) == (
        "pause",
        "oncall",
        REASON,
        {"system": "erp"},
    )
    assert paused.json()["action_id"] == action["id"]
    text = cli("downstream", "status").out
    assert "erp       PAUSED by oncall since" in text and REASON in text
    assert "channels  sending" in text
    assert "pause    finished    by oncall" in cli("dlq", "actions").out


def test_a_dry_run_says_what_would_happen_and_changes_nothing(cli: Cli, engine: Engine) -> None:
    pause = cli("downstream", "pause", "erp", "--reason", REASON, "--dry-run")
    resume = cli("downstream", "resume", "payments", "--reason", "nothing to resume", "--dry-run")

    assert pause.code == 0 and "would pause erp (dry run: nothing changed)" in pause.out
    assert resume.code == 0 and "would leave alone (not paused) payments" in resume.out
    assert actions(engine) == []
    assert cli("downstream", "status", "--system", "erp", "--json").json()["systems"][0]["paused"] is None


def test_resume_lets_the_system_send_again_and_a_resume_of_a_running_one_is_recorded(cli: Cli, engine: Engine) -> None:
    cli("downstream", "pause", "erp", "--reason", REASON)

    resumed = cli("downstream", "resume", "erp", "--reason", "upgrade done")
    again = cli("downstream", "resume", "erp", "--reason", "double check")

    assert resumed.code == 0 and resumed.out.startswith("resumed erp (action #2)")
    assert "flowfleet reconcile --system erp" in resumed.out
    assert again.code == 0 and "left alone (it was not paused) erp" in again.out
    assert [(a["kind"], a["counts"]["outcome"]) for a in actions(engine)] == [
        ("pause", "paused"),
        ("resume", "resumed"),
        ("resume", "not_paused"),
    ]
    with engine.connect() as connection:
        assert (
            connection.execute(
                select(downstream_controls.c.paused).where(downstream_controls.c.system == "erp")
            ).scalar_one()
            is False
        )


@pytest.mark.parametrize(
    "argv",
    [
        ("downstream", "pause", "warehouse", "--reason", "x"),
        ("downstream", "resume", "ERP", "--reason", "x"),
        ("downstream", "status", "--system", "sap"),
        ("reconcile", "--system", "ledger"),
    ],
)
def test_an_unknown_system_is_refused_with_exit_code_2(cli: Cli, engine: Engine, argv: tuple[str, ...]) -> None:
    ran = cli(*argv)

    assert ran.code == 2
    assert "unknown downstream system" in ran.err and "erp, channels, notify, payments" in ran.err
    assert actions(engine) == []


def test_a_planned_end_in_the_past_is_refused(cli: Cli, engine: Engine) -> None:
    ran = cli("downstream", "pause", "erp", "--reason", REASON, "--until", "2020-01-01T06:00Z")

    assert ran.code == 2 and "in the past" in ran.err
    assert actions(engine) == []


def test_until_takes_a_clock_time_an_iso_moment_or_a_duration() -> None:
    at = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)

    assert parse_until("06:00", now=at) == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert parse_until("03:00", now=at) == datetime(2026, 12, 3, 3, 0, tzinfo=UTC), "already past today: tomorrow"
    assert parse_until("2026-12-03T06:00Z", now=at) == datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    assert parse_until("2026-12-02T07:00+01:00", now=at) == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert parse_until("90m", now=at) == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    for wrong in ("25:00", "soon", "2026-12-01"):
        with pytest.raises(CommandError):
            parse_until(wrong, now=at)


def test_status_shows_the_backlog_oldest_in_flight_throughput_failures_dead_letters_and_breaker(
    cli: Cli, engine: Engine
) -> None:
    at = now()
    record_delivery(
        engine, now=at, age=timedelta(minutes=30), first_failed_at=at, last_error="erp answered 503 for ana@example.com"
    )
    record_delivery(
        engine, now=at, age=timedelta(minutes=1), lease_owner="w1", lease_expires_at=at + timedelta(minutes=1)
    )
    record_delivery(engine, now=at, age=timedelta(hours=1), status=DEAD_LETTERED)
    for minutes in (1, 2, 10):
        record_delivery(
            engine, now=at, age=timedelta(hours=1), status=DELIVERED, finished_at=at - timedelta(minutes=minutes)
        )
    open_breaker(engine, "erp", opened_at=at - timedelta(minutes=6), failures=7)

    [erp] = cli("downstream", "status", "--system", "erp", "--json").json()["systems"]

    assert erp["backlog"] == 2 and erp["in_flight"] == 1 and erp["failing"] == 1 and erp["dead_lettered"] == 1
    assert 30 * 60 <= erp["oldest_pending_seconds"] < 31 * 60
    assert erp["overdue"] == 1 and erp["objective_seconds"] == 900
    assert erp["delivered_per_minute"] == {"5m": 0.4, "15m": 0.2}
    assert erp["breaker"]["state"] == "open" and erp["breaker"]["consecutive_failures"] == 7
    assert erp["last_error"] == "erp answered 503 for ***", "personal data is masked"
    text = cli("downstream", "status", "--system", "erp").out
    assert "backlog 2 (oldest 30 min, 1 past the 15 min objective), in flight 1, failing 1, dead-lettered 1" in text
    assert "breaker OPEN since" in text and "after 7 failures" in text


def test_reconcile_passes_when_every_effect_was_confirmed_or_superseded(cli: Cli, engine: Engine) -> None:
    at = now()
    record_delivery(engine, now=at, age=timedelta(hours=1), status=DELIVERED, finished_at=at)
    record_delivery(engine, now=at, age=timedelta(hours=1), status=SUPERSEDED, system="channels")
    record_delivery(engine, now=at, age=timedelta(minutes=2))  # pending, within the ERP's 15 minutes

    ran = cli("reconcile")

    assert ran.code == 0, ran.out + ran.err
    assert "0 mismatch(es)" in ran.out and "erp: every effect confirmed" in ran.out


def test_reconcile_lists_each_mismatch_in_words_and_exits_1_until_it_is_delivered(cli: Cli, engine: Engine) -> None:
    at = now()
    refund = record_delivery(
        engine,
        now=at,
        age=timedelta(hours=2),
        status=DEAD_LETTERED,
        contract="payment.refunded",
        business_keys={"refund_id": "REF-17", "payment_id": "PAY-9", "order_id": "ORD-9"},
        dead_letter_id=812,
    )
    record_delivery(
        engine, now=at, age=timedelta(minutes=47), attempts=9, business_keys={"order_id": "ORD-1"}, system="erp"
    )
    record_delivery(
        engine,
        now=at,
        age=timedelta(minutes=10),
        system="channels",
        contract="price.changed",
        business_keys={"sku": "MUG-BLUE", "currency": "EUR"},
    )

    ran = cli("reconcile")
    only_channels = cli("reconcile", "--system", "channels", "--json")

    assert ran.code == 1
    assert "refund REF-17 of payment PAY-9 recorded here, not posted to the ERP: dead letter 812" in ran.out
    assert (
        "order ORD-1 reserved here, not posted to the ERP: pending for 47 min (objective 15 min), 9 attempt(s)"
        in ran.out
    )
    assert "price of MUG-BLUE in EUR changed here, not sent to the sales channels: pending for 10 min" in ran.out
    assert only_channels.code == 1
    report = only_channels.json()
    assert report["mismatches"] == 1 and list(report["systems"]) == ["channels"]
    assert report["systems"]["channels"][0]["business_keys"] == {"sku": "MUG-BLUE", "currency": "EUR"}
    assert report["owners"]["channels"]["team"] == "channels", "the system's team owns its mismatches"
    assert "owner: ERP team (#erp-support" in ran.out
    assert cli("reconcile", "--since", "1h").code == 1, "the refund is older, the others are not"

    with engine.begin() as connection:  # `dlq replay` after the fix: the relay delivers it, same key
        connection.execute(update(deliveries).where(deliveries.c.id == refund).values(status=DELIVERED, finished_at=at))
        connection.execute(update(deliveries).where(deliveries.c.id != refund).values(status=DELIVERED, finished_at=at))
        assert (
            connection.execute(
                select(func.count()).select_from(deliveries).where(deliveries.c.status != DELIVERED)
            ).scalar_one()
            == 0
        )

    assert cli("reconcile").code == 0
