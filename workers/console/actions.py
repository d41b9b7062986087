"""The audit log (every operator action, filterable, each with its progress and outcomes), discard, restore, purge.

A replay's page reads its action and outcomes from the archive, so it survives a reload, and offers
resume when the replay was stopped or interrupted. Discard and restore are the CLI's audited move;
purge (admin) is `dlq purge`'s audited delete of records closed before a date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from workers.console.auth import ADMIN, OPERATOR, VIEWER, Principal
from workers.console.selection import selection_of
from workers.console.views import Refused, console_of, endpoint, reason_of, render
from workers.deadletters.selection import moment
from workers.store.archive.actions import DISCARD, INTERRUPTED, REPAIR, REPLAY, RESTORE, STOPPED, get_action
from workers.store.archive.moves import audited_purge, purgeable
from workers.store.archive.pages import action_page
from workers.store.archive.records import DeadLetterFilter, matching_ids
from workers.store.archive.replays import action_replays, outcome_counts
from workers.store.archive.status import DISCARDED, OPEN
from workers.store.archive.status_changes import audited_move

PAGE_SIZE = 50


@endpoint(VIEWER)
def audit_log(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    params = request.query_params
    try:
        before = int(params["before"]) if params.get("before") else None
    except ValueError:
        raise Refused("before is an action id (the page's cursor)") from None
    kind, actor = params.get("kind") or None, params.get("actor") or None
    with console_of(request).engine.connect() as connection:
        rows, cursor = action_page(connection, kind=kind, actor=actor, before=before, limit=PAGE_SIZE)
    return render(request, who, "actions.html", rows=rows, cursor=cursor, kind=kind, actor=actor)


def _progress(request: Request) -> dict[str, Any] | None:
    action_id = int(request.path_params["id"])
    with console_of(request).engine.connect() as connection:
        action = get_action(connection, action_id)
        if action is None:
            return None
        outcomes = outcome_counts(connection, action_id) if action["kind"] in (REPLAY, REPAIR) else {}
        items = action_replays(connection, action_id) if action["kind"] in (REPLAY, REPAIR) else []
    return {
        "action": action,
        "outcomes": outcomes,
        "items": [{k: v for k, v in item.items() if k != "body"} for item in items[:200]],
        "resumable": action["kind"] in (REPLAY, REPAIR) and action["status"] in (STOPPED, INTERRUPTED),
    }


@endpoint(VIEWER)
def action(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    found = _progress(request)
    if found is None:
        raise Refused(f"no action #{request.path_params['id']}")
    return render(request, who, "action.html", **found)


@endpoint(VIEWER)
def action_json(request: Request, _who: Principal, _form: Mapping[str, str]) -> Response:
    """What the progress script polls: status, counts and outcomes, nothing personal."""
    found = _progress(request)
    if found is None:
        return JSONResponse({"error": "no such action"}, status_code=404)
    act = found["action"]
    assert isinstance(act, dict)
    return JSONResponse(
        {
            "id": act["id"],
            "status": act["status"],
            "counts": act["counts"],
            "outcomes": found["outcomes"],
            "note": act["note"],
        }
    )


@endpoint(OPERATOR, post=True)
def discard(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Discard every open dead letter the form's selection matches (rebuilt here, never posted as ids)."""
    where = selection_of(form, status=OPEN)
    if not where.narrows:
        raise Refused("select what to discard: a group or a filter")
    reason = reason_of(form)
    with console_of(request).engine.begin() as connection:
        ids = matching_ids(connection, where)
        action_id, _moved = audited_move(
            connection,
            kind=DISCARD,
            actor=who.name,
            reason=reason,
            selection=replace(where, status=None).to_json(),
            ids=ids,
            statuses=(OPEN, DISCARDED),
            event="discarded",
        )
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


@endpoint(OPERATOR, post=True)
def restore(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Reopen one discarded dead letter (the record page's button)."""
    record_id = int(request.path_params["id"])
    reason = reason_of(form)
    with console_of(request).engine.begin() as connection:
        found = matching_ids(connection, DeadLetterFilter(ids=(record_id,), status=DISCARDED))
        action_id, _moved = audited_move(
            connection,
            kind=RESTORE,
            actor=who.name,
            reason=reason,
            selection={"ids": [record_id]},
            ids=found or [record_id],
            statuses=(DISCARDED, OPEN),
            event="restored",
        )
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


def _closed_before(form: Mapping[str, str]) -> tuple[str, datetime | None]:
    text = form.get("resolved_before", "").strip()
    if not text:
        return "", None
    try:
        return text, moment(text)
    except ValueError:
        raise Refused(f"resolved before: not a time: {text[:40]!r} (an ISO date like 2026-11-22, or 30d)") from None


@endpoint(ADMIN)
def purge_preview(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    """How many resolved or discarded records a purge would delete (nothing is deleted by this page)."""
    text, before = _closed_before(request.query_params)
    doomed: list[dict[str, Any]] = []
    if before is not None:
        with console_of(request).engine.connect() as connection:
            doomed = purgeable(connection, before)
    return render(request, who, "purge.html", resolved_before=text, before=before, count=len(doomed))


@endpoint(ADMIN, post=True)
def purge(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Delete the records closed before the date, chosen again here on the server, audited as `dlq purge` is."""
    _text, before = _closed_before(form)
    if before is None:
        raise Refused("a purge needs a date: records resolved or discarded before it are deleted")
    reason = reason_of(form, "a purge")
    with console_of(request).engine.begin() as connection:
        doomed = purgeable(connection, before)
        action_id, _removed = audited_purge(connection, doomed, before=before, actor=who.name, reason=reason)
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


ROUTES = [
    Route("/actions", audit_log, name="actions"),
    Route("/actions/{id:int}", action, name="action"),
    Route("/actions/{id:int}.json", action_json, name="action_json"),
    Route("/discard", discard, methods=["POST"], name="discard"),
    Route("/records/{id:int}/restore", restore, methods=["POST"], name="restore"),
    Route("/purge", purge_preview, name="purge_preview"),
    Route("/purge", purge, methods=["POST"], name="purge"),
]
