"""The read pages: overview, failure groups, one group, the records list (cursor pages), one record, unmasking.

Every page has a stable URL an alert or runbook can link to (`/groups/<fingerprint>`,
`/records?order_id=…`); personal data is masked unless an admin unmasks one record, which is audited.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from workers.console.auth import ADMIN, VIEWER, Principal
from workers.console.downstream import downstream_overview
from workers.console.queues import queue_depths
from workers.console.selection import selection_of, selection_params
from workers.console.views import Refused, console_of, endpoint, reason_of, render
from workers.deadletters.export import readable
from workers.flows import FLOWS
from workers.observability.masking import mask, mask_text
from workers.store.archive.actions import FINISHED, create_action
from workers.store.archive.pages import action_page, dead_letter_page
from workers.store.archive.records import count_dead_letters, dead_letter_groups, get_dead_letter
from workers.store.archive.stats import archive_stats
from workers.store.outbox.overview import deliveries_of

PAGE_SIZE = 50
UNMASK = "unmask"
NEW_WINDOW = timedelta(hours=1)


def runbook(flow: str) -> str:
    return f"runbooks/{flow}.md"


@endpoint(VIEWER)
def overview(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    console = console_of(request)
    now = datetime.now(UTC)
    with console.engine.connect() as connection:
        stats = archive_stats(connection, now=now, new_window=NEW_WINDOW)
        systems = downstream_overview(connection, console.settings, now=now)
    stages = sorted({stage for _flow, stage in stats.open})
    flows = [
        {
            "name": flow.name,
            "open": {stage: stats.open.get((flow.name, stage), 0) for stage in stages},
            "total": sum(n for (name, _), n in stats.open.items() if name == flow.name),
            "oldest": stats.oldest_open.get(flow.name),
            "new": sum(n for (name, _), n in stats.new_fingerprints.items() if name == flow.name),
        }
        for flow in FLOWS
    ]
    depths = queue_depths(console.settings, [flow.name for flow in FLOWS])
    return render(request, who, "overview.html", flows=flows, stages=stages, systems=systems, now=now, depths=depths)


@endpoint(VIEWER)
def groups(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    params = dict(request.query_params)
    where = selection_of(params)
    with console_of(request).engine.connect() as connection:
        found = dead_letter_groups(connection, where)
    for group in found:
        group["sample_reason"] = mask_text(group["sample_reason"])
        group["runbooks"] = [runbook(flow) for flow in group["flows"]]
    return render(request, who, "groups.html", groups=found, params=selection_params(params))


@endpoint(VIEWER)
def group(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    fingerprint = request.path_params["fingerprint"]
    params = {**dict(request.query_params), "group": fingerprint}
    where = selection_of(params)
    with console_of(request).engine.connect() as connection:
        found = dead_letter_groups(connection, where)
        rows, cursor = dead_letter_page(connection, where, before=None, limit=PAGE_SIZE)
        replays = _last_replays(connection, fingerprint)
    summary = found[0] if found else None
    if summary is not None:
        summary["sample_reason"] = mask_text(summary["sample_reason"])
        summary["runbooks"] = [runbook(flow) for flow in summary["flows"]]
    return render(
        request,
        who,
        "group.html",
        fingerprint=fingerprint,
        group=summary,
        rows=[mask(row) for row in rows],
        cursor=cursor,
        replays=replays,
        params=selection_params(params),
    )


def _last_replays(connection: Any, fingerprint: str) -> list[dict[str, Any]]:
    """The replays whose selection was this group, newest first (with their counts)."""
    rows, _ = action_page(connection, kind=None, actor=None, before=None, limit=200)
    return [row for row in rows if (row.get("selection") or {}).get("fingerprint") == fingerprint][:5]


@endpoint(VIEWER)
def records(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    params = dict(request.query_params)
    where = selection_of(params)
    try:
        before = int(params["before"]) if params.get("before") else None
    except ValueError:
        raise Refused("before is a record id (the page's cursor)") from None
    with console_of(request).engine.connect() as connection:
        rows, cursor = dead_letter_page(connection, where, before=before, limit=PAGE_SIZE)
        total = count_dead_letters(connection, where)
    return render(
        request,
        who,
        "records.html",
        rows=[mask(row) for row in rows],
        cursor=cursor,
        total=total,
        params=selection_params(params),
        first_page=before is None,
    )


@endpoint(VIEWER)
def record(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    return _record_page(request, who, unmask=False)


@endpoint(ADMIN, post=True)
def unmask(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Show one record unmasked, once, to an admin who gave a reason; the action is in the audit log."""
    reason = reason_of(form, "unmasking")
    record_id = int(request.path_params["id"])
    with console_of(request).engine.begin() as connection:
        create_action(
            connection, kind=UNMASK, actor=who.name, reason=reason, selection={"ids": [record_id]}, status=FINISHED
        )
    return _record_page(request, who, unmask=True)


def _record_page(request: Request, who: Principal, *, unmask: bool) -> Response:
    record_id = int(request.path_params["id"])
    with console_of(request).engine.connect() as connection:
        found = get_dead_letter(connection, record_id)
        caused = [] if found is None else deliveries_of(connection, str(found["message_id"]))
    if found is None:
        return render(request, who, "message.html", status=404, title="Not found", text=f"No dead letter #{record_id}")
    shown = readable(found)
    #: As pairs: masking blanks every field called "name", and a key's name is not personal.
    shown["keys"] = [[key["name"], key["value"]] for key in shown.get("keys", [])]
    shown = shown if unmask else mask(shown)
    return render(request, who, "record.html", record=shown, unmasked=unmask, pretty=_pretty, deliveries=mask(caused))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


ROUTES = [
    Route("/", overview, name="overview"),
    Route("/groups", groups, name="groups"),
    Route("/groups/{fingerprint}", group, name="group"),
    Route("/records", records, name="records"),
    Route("/records/{id:int}", record, name="record"),
    Route("/records/{id:int}/unmask", unmask, methods=["POST"], name="unmask"),
]
