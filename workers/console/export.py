"""Admin export: the records matching the list's filter as JSON Lines, `dlq export`'s lines, streamed and audited.

A POST form (CSRF-checked like every state change) because an export writes an audit row. The
selection is rebuilt here from the form's filter, never posted as ids; the audit row is committed
before the first line is sent, so a download that breaks off is still on record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from workers.console.auth import ADMIN, Principal
from workers.console.selection import selection_of
from workers.console.views import console_of, endpoint, reason_of
from workers.deadletters.export import audit_export, streamed_export
from workers.store.archive.records import matching_ids

#: What the audit row says the export went to (the CLI records its --output file, or "-").
DOWNLOAD = "console download"


@endpoint(ADMIN, post=True)
def export(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Stream the matching records (masked unless `unmask` is checked) as a JSON Lines attachment."""
    where = selection_of(form)
    reason = reason_of(form, "an export")
    unmask = form.get("unmask") == "yes"
    engine = console_of(request).engine
    with engine.begin() as connection:
        ids = matching_ids(connection, where)
        action_id = audit_export(
            connection, actor=who.name, reason=reason, where=where, unmask=unmask, output=DOWNLOAD, count=len(ids)
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        streamed_export(engine, ids, unmask=unmask),
        media_type="application/x-ndjson; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="dead-letters-{stamp}-action-{action_id}.jsonl"',
            "X-Flowfleet-Action": str(action_id),
        },
    )


ROUTES = [Route("/export", export, methods=["POST"], name="export")]
