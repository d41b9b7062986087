"""Replay and repair from the console: dry-run preview, then canary and rate; JSON Patch with a diff and a verdict.

Both run through the replayer `dlq replay|repair` uses (one implementation, one audit trail), on a
selection the server rebuilds from the filter, never from ids the page posts; the actor is the user.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from contracts.published import REGISTRY
from workers.console.auth import OPERATOR, VIEWER, Principal
from workers.console.selection import selection_of, selection_params
from workers.console.views import Refused, console_of, endpoint, reason_of, render
from workers.deadletters.preflight import check
from workers.deadletters.preview import dry_run
from workers.deadletters.repair import RepairRefused, repair
from workers.deadletters.repair_send import send_repaired
from workers.deadletters.replay import ReplayError
from workers.deadletters.report import ReplayOptions
from workers.observability.masking import mask, mask_text
from workers.store.archive.records import get_dead_letter
from workers.store.archive.status import OPEN


@endpoint(VIEWER)
def preview(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    """What replaying the selection would do today (the dry run), and the form that starts it."""
    console = console_of(request)
    params = dict(request.query_params)
    where = selection_of(params, status=OPEN)
    if not where.narrows and params.get("all") != "1":
        raise Refused("select what to replay: a group or a filter (or all=1 for every open dead letter)")
    max_age = timedelta(seconds=console.settings.max_event_age_seconds)
    with console.engine.connect() as connection:
        report = dry_run(connection, where, registry=REGISTRY, max_event_age=max_age, shown=mask_text)
    return render(request, who, "replay.html", report=report, params=selection_params(params) | _all(params))


def _all(params: Mapping[str, str]) -> dict[str, str]:
    return {"all": "1"} if params.get("all") == "1" else {}


@endpoint(OPERATOR, post=True)
def start(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Start a replay of the selection the form's hidden fields describe; then follow it on its action page."""
    where = selection_of(form, status=OPEN)
    if not where.narrows and form.get("all") != "1":
        raise Refused("select what to replay: a group or a filter")
    reason = reason_of(form, "a replay")
    try:
        rate = float(form["rate"]) if form.get("rate", "").strip() else None
        canary = int(form.get("canary") or 0)
        canary_wait = float(form.get("canary_wait") or 60.0)
    except ValueError:
        raise Refused("rate is messages per second, canary a number of messages") from None
    if (rate is not None and rate <= 0) or canary < 0:
        raise Refused("rate must be above 0 and canary 0 or more")
    options = ReplayOptions(rate=rate, canary=canary, canary_wait=canary_wait, wait=10.0)
    try:
        action_id = console_of(request).jobs.start(
            lambda replayer: replayer.start(where, actor=who.name, reason=reason, options=options)
        )
    except ReplayError as error:
        raise Refused(str(error)) from None
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


@endpoint(OPERATOR, post=True)
def resume(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    action_id = int(request.path_params["id"])
    try:
        console_of(request).jobs.start(lambda replayer: replayer.resume(action_id, actor=who.name))
    except ReplayError as error:
        raise Refused(str(error)) from None
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


def _open_record(request: Request) -> dict[str, Any]:
    record_id = int(request.path_params["id"])
    with console_of(request).engine.connect() as connection:
        record = get_dead_letter(connection, record_id)
    if record is None:
        raise Refused(f"no dead letter #{record_id}")
    if record["status"] != OPEN:
        newest = f": repair its newest copy, #{record['replayed_as'][-1]}" if record["replayed_as"] else ""
        raise Refused(f"dead letter #{record_id} is {record['status']}, not open{newest}")
    return record


def _patch_of(form: Mapping[str, str]) -> Any:
    try:
        return json.loads(form.get("patch", ""))
    except json.JSONDecodeError as error:
        raise Refused(f"the patch is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


@endpoint(OPERATOR, post=True)
def repair_preview(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """The edit's before/after diff (masked) and the contract's verdict; nothing is sent."""
    console = console_of(request)
    record = _open_record(request)
    patch = _patch_of(form)
    context: dict[str, Any] = {"record": mask(_summary(record)), "patch": form.get("patch", "")}
    try:
        repaired = repair(record, patch, REGISTRY)
    except RepairRefused as error:
        context |= {"refused": mask_text(error.reason), "field_paths": list(error.field_paths)}
        return render(request, who, "repair.html", status=422, **context)
    with console.engine.connect() as connection:
        verdict = check(
            connection,
            repaired.body,
            flow=record["flow"],
            registry=REGISTRY,
            max_event_age=timedelta(seconds=console.settings.max_event_age_seconds),
        )
    before = json.loads(bytes(record["body"]))["data"]
    context |= {
        "diff": _diff(mask(before), mask(repaired.data)),
        "verdict": verdict.verdict,
        "verdict_reason": None if verdict.reason is None else mask_text(verdict.reason),
        "contract": f"{repaired.contract} v{repaired.version}",
        "dedup_key": repaired.dedup_key,
        "reason": form.get("reason", ""),
    }
    return render(request, who, "repair.html", **context)


@endpoint(OPERATOR, post=True)
def repair_start(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Send the edited copy through the replayer as a `repair` action, as `dlq repair` does."""
    record = _open_record(request)
    patch = _patch_of(form)
    reason = reason_of(form, "a repair")
    try:
        repaired = repair(record, patch, REGISTRY)
    except RepairRefused as error:
        raise Refused(f"repair refused, nothing was sent: {mask_text(error.reason)}") from None
    try:
        action_id = console_of(request).jobs.start(
            lambda replayer: send_repaired(
                replayer, int(record["id"]), repaired, patch, actor=who.name, reason=reason, wait=10.0
            )
        )
    except ReplayError as error:
        raise Refused(str(error)) from None
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


def _summary(record: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", "flow", "stage", "contract", "version", "error_type", "error_message", "field_paths")
    return {key: record.get(key) for key in keep}


def _diff(before: Any, after: Any) -> list[str]:
    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return list(difflib.unified_diff(lines(before), lines(after), "before", "after", lineterm="", n=3))


ROUTES = [
    Route("/replay", preview, name="replay_preview"),
    Route("/replay", start, methods=["POST"], name="replay_start"),
    Route("/actions/{id:int}/resume", resume, methods=["POST"], name="resume"),
    Route("/records/{id:int}/repair/preview", repair_preview, methods=["POST"], name="repair_preview"),
    Route("/records/{id:int}/repair", repair_start, methods=["POST"], name="repair_start"),
]
