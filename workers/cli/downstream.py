"""`flowfleet downstream status|pause|resume`: an operator holds a system's deliveries for a maintenance window.

A pause is held in the database (`downstream_controls`), so every worker's relay honours it within
seconds and it survives restarts; events keep being applied and their deliveries recorded meanwhile,
requests already out finish. `--until` is the plan, not a timer: the pause holds until `resume`, and an
alert fires once the plan has passed. Both writes take --reason, have --dry-run and are audited as
actions (`flowfleet dlq actions`).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.cli.command import CommandError, Subparsers, runs
from workers.cli.dlq.archive import archive_engine
from workers.cli.dlq.arguments import actor_of
from workers.cli.output import dump_json
from workers.observability.exporter import delivery_objectives
from workers.observability.masking import mask_text
from workers.settings import DOWNSTREAM_SYSTEMS, Settings
from workers.store.outbox import controls, plans
from workers.store.outbox.backlog import RECENT_WINDOWS, SystemBacklog, backlog, last_errors
from workers.store.outbox.controls import Control

SYSTEMS_HELP = "|".join(DOWNSTREAM_SYSTEMS)


def register(sub: Subparsers) -> None:
    """The `downstream` command and its actions, each parser naming the function that runs it."""
    group = sub.add_parser("downstream", help="pause, resume and watch the deliveries to each downstream system")
    actions = group.add_subparsers(dest="action", required=True)

    status = runs(
        actions.add_parser("status", help="per system: backlog, oldest, in flight, throughput, pause, breaker"),
        downstream_status,
    )
    status.add_argument("--system", metavar=SYSTEMS_HELP, help="only this system")
    status.add_argument("--json", action="store_true")

    pause = runs(
        actions.add_parser("pause", help="hold a system's deliveries (they keep being recorded), audited"),
        downstream_pause,
    )
    pause.add_argument("system", metavar=SYSTEMS_HELP)
    pause.add_argument("--until", metavar="WHEN", help="planned end: 06:00 (UTC, next), 2026-12-03T06:00Z, or 2h")
    _write_arguments(pause)

    resume = runs(
        actions.add_parser("resume", help="let the relays send a paused system's backlog again, audited"),
        downstream_resume,
    )
    resume.add_argument("system", metavar=SYSTEMS_HELP)
    _write_arguments(resume)


def _write_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    parser.add_argument("--actor", help="who (default FLOWFLEET_OPERATOR or the OS user)")
    parser.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    parser.add_argument("--json", action="store_true")


def known_system(name: str) -> str:
    try:
        return controls.known_system(name)
    except controls.UnknownSystem as error:
        raise CommandError(str(error)) from None


def parse_until(text: str, *, now: datetime) -> datetime:
    """`--until` as the plan of a pause (see `plans.parse_until`)."""
    try:
        return plans.parse_until(text, now=now)
    except plans.NotAPlan as error:
        raise CommandError(f"--until: {error}") from None


# -- status ----------------------------------------------------------------------------------------


def system_report(
    system: str, control: Control, stats: SystemBacklog, *, objective: timedelta, error: str | None, now: datetime
) -> dict[str, Any]:
    """One system as `status --json` shows it (and the text is drawn from)."""
    per_minute = stats.per_minute()
    return {
        "system": system,
        "paused": _pause_report(control, now) if control.paused else None,
        "breaker": {
            "state": control.breaker,
            "consecutive_failures": control.consecutive_failures,
            "opened_at": control.breaker_opened_at,
        },
        "backlog": stats.pending,
        "oldest_pending_seconds": round(stats.oldest_pending_seconds(now), 1),
        "objective_seconds": int(objective.total_seconds()),
        "overdue": stats.overdue,
        "in_flight": stats.in_flight,
        "failing": stats.failing,
        "dead_lettered": stats.dead_lettered,
        "delivered_per_minute": {
            f"{int(window.total_seconds() // 60)}m": round(rate, 2)
            for window, rate in zip(RECENT_WINDOWS, per_minute, strict=True)
        },
        "last_error": None if error is None else mask_text(error[:300]),
    }


def _pause_report(control: Control, now: datetime) -> dict[str, Any]:
    since = control.paused_since
    return {
        "by": control.paused_by,
        "reason": control.pause_reason,
        "since": since,
        "until": control.paused_until,
        "for_seconds": None if since is None else round((now - since).total_seconds()),
        "past_plan": control.paused_until is not None and now > control.paused_until,
    }


def downstream_status(args: argparse.Namespace, settings: Settings) -> int:
    systems = [known_system(args.system)] if args.system else list(DOWNSTREAM_SYSTEMS)
    objectives = delivery_objectives(settings)
    now = datetime.now(UTC)
    with archive_engine(settings) as engine, engine.connect() as connection:
        found = controls.read_controls(connection)
        stats = backlog(connection, now=now, objectives=objectives)
        errors = last_errors(connection)
    reports = [
        system_report(
            system,
            found.get(system) or Control.idle(system),
            stats.get(system) or SystemBacklog(system),
            objective=objectives[system],
            error=errors.get(system),
            now=now,
        )
        for system in systems
    ]
    if args.json:
        print(dump_json({"at": now, "systems": reports}))
        return 0
    for report in reports:
        print(_status_text(report))
    return 0


def _status_text(report: dict[str, Any]) -> str:
    paused = report["paused"]
    if paused:
        plan = f", planned until {paused['until']:%Y-%m-%d %H:%M} UTC" if paused["until"] else ", no planned end"
        late = " (PAST ITS PLAN)" if paused["past_plan"] else ""
        state = (
            f"PAUSED by {paused['by']} since {paused['since']:%Y-%m-%d %H:%M} UTC "
            f"({_duration(paused['for_seconds'])}){plan}{late}: {paused['reason']}"
        )
    else:
        state = "sending"
    breaker = report["breaker"]
    breaker_text = "closed" if breaker["state"] == controls.BREAKER_CLOSED else f"{breaker['state'].upper()}"
    if breaker["state"] != controls.BREAKER_CLOSED and breaker["opened_at"]:
        breaker_text += f" since {breaker['opened_at']:%H:%M} UTC after {breaker['consecutive_failures']} failures"
    rates = ", ".join(f"{rate}/min ({window})" for window, rate in report["delivered_per_minute"].items())
    overdue = f", {report['overdue']} past the {_duration(report['objective_seconds'])} objective"
    lines = [
        f"{report['system']:<9} {state}",
        f"          backlog {report['backlog']} (oldest {_duration(report['oldest_pending_seconds'])}"
        f"{overdue if report['overdue'] else ''}), in flight {report['in_flight']}, "
        f"failing {report['failing']}, dead-lettered {report['dead_lettered']}",
        f"          delivered {rates}; breaker {breaker_text}",
    ]
    if report["last_error"]:
        lines.append(f"          last error: {report['last_error']}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


# -- pause and resume ------------------------------------------------------------------------------


def downstream_pause(args: argparse.Namespace, settings: Settings) -> int:
    system = known_system(args.system)
    now = datetime.now(UTC)
    until = None if args.until is None else parse_until(args.until, now=now)
    with archive_engine(settings) as engine:
        if args.dry_run:
            with engine.connect() as connection:
                before = controls.read_control(connection, system)
            verb = "would update the pause of" if before.paused else "would pause"
            return _report(args, verb, system, before, action_id=None, until=until)
        with engine.begin() as connection:
            change = controls.pause(connection, system, actor=actor_of(args), reason=args.reason, until=until, now=now)
    verb = "paused" if change.outcome == controls.PAUSED else "updated the pause of"
    return _report(args, verb, system, change.after, action_id=change.action_id, until=until)


def downstream_resume(args: argparse.Namespace, settings: Settings) -> int:
    system = known_system(args.system)
    now = datetime.now(UTC)
    with archive_engine(settings) as engine:
        if args.dry_run:
            with engine.connect() as connection:
                before = controls.read_control(connection, system)
            verb = "would resume" if before.paused else "would leave alone (not paused)"
            return _report(args, verb, system, before, action_id=None)
        with engine.begin() as connection:
            change = controls.resume(connection, system, actor=actor_of(args), reason=args.reason, now=now)
    verb = "resumed" if change.outcome == controls.RESUMED else "left alone (it was not paused)"
    return _report(args, verb, system, change.after, action_id=change.action_id)


def _report(
    args: argparse.Namespace,
    verb: str,
    system: str,
    control: Control,
    *,
    action_id: int | None,
    until: datetime | None = None,
) -> int:
    if args.json:
        print(
            dump_json(
                {
                    "dry_run": bool(args.dry_run),
                    "action_id": action_id,
                    "system": system,
                    "done": verb,
                    "control": asdict(control),
                }
            )
        )
        return 0
    audit = f" (action #{action_id})" if action_id is not None else " (dry run: nothing changed)"
    print(f"{verb} {system}{audit}")
    if control.paused and not args.dry_run:
        plan = f"planned until {until:%Y-%m-%d %H:%M} UTC" if until else "no planned end: the alert fires after 4 h"
        print(
            f"  every relay stops claiming {system}'s deliveries within seconds; requests already out finish ({plan})"
        )
        print(f"  watch:  flowfleet downstream status --system {system}")
        print(f"  resume: flowfleet downstream resume {system} --reason '…'")
    elif verb == "resumed":
        print(f"  the relays send {system}'s backlog again, in order per key; watch it drain:")
        print(f"  flowfleet downstream status --system {system}; then flowfleet reconcile --system {system}")
    return 0
