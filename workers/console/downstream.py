"""The downstream page: each system's delivery backlog, its oldest pending delivery, whether it is paused, its breaker.

Pausing and resuming arrive with `flowfleet downstream pause|resume`; until then the page only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from workers.console.auth import VIEWER, Principal
from workers.console.views import console_of, endpoint, render
from workers.store.outbox.overview import systems_overview


def downstream_overview(connection: Connection, *, now: datetime) -> list[dict[str, Any]]:
    rows = systems_overview(connection)
    for row in rows:
        oldest = row["oldest_pending"]
        row["oldest_seconds"] = None if oldest is None else max(0.0, (now - oldest).total_seconds())
    return rows


@endpoint(VIEWER)
def downstream(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    with console_of(request).engine.connect() as connection:
        rows = downstream_overview(connection, now=datetime.now(UTC))
    return render(request, who, "downstream.html", systems=rows)


ROUTES = [Route("/downstream", downstream, name="downstream")]
