"""The downstream page: each system's backlog, oldest pending, pause and breaker, and the operator's pause and resume.

Pause and resume are `controls.pause`/`controls.resume`, the very functions `flowfleet downstream
pause|resume` calls, in one transaction with their audit row; the actor is the authenticated user.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from workers.console.auth import OPERATOR, VIEWER, Principal
from workers.console.views import Refused, console_of, endpoint, reason_of, render
from workers.observability.exporter import delivery_objectives
from workers.settings import Settings
from workers.store.outbox import controls, plans
from workers.store.outbox.overview import systems_overview


def downstream_overview(connection: Connection, settings: Settings, *, now: datetime) -> list[dict[str, Any]]:
    return systems_overview(connection, now=now, objectives=delivery_objectives(settings))


@endpoint(VIEWER)
def downstream(request: Request, who: Principal, _form: Mapping[str, str]) -> Response:
    console = console_of(request)
    with console.engine.connect() as connection:
        rows = downstream_overview(connection, console.settings, now=datetime.now(UTC))
    return render(request, who, "downstream.html", systems=rows)


def _system(request: Request) -> str:
    try:
        return controls.known_system(request.path_params["system"])
    except controls.UnknownSystem as error:
        raise Refused(str(error)) from None


@endpoint(OPERATOR, post=True)
def pause(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Hold a system's deliveries (or update the reason and plan of its pause), with an optional planned end."""
    system, reason, now = _system(request), reason_of(form), datetime.now(UTC)
    text = form.get("until", "").strip()
    try:
        until = plans.parse_until(text, now=now) if text else None
    except plans.NotAPlan as error:
        raise Refused(f"until: {error}") from None
    with console_of(request).engine.begin() as connection:
        change = controls.pause(connection, system, actor=who.name, reason=reason, until=until, now=now)
    return RedirectResponse(f"/actions/{change.action_id}", status_code=303)


@endpoint(OPERATOR, post=True)
def resume(request: Request, who: Principal, form: Mapping[str, str]) -> Response:
    """Let the relays send a paused system's backlog again (a resume of a running system is recorded too)."""
    system, reason, now = _system(request), reason_of(form), datetime.now(UTC)
    with console_of(request).engine.begin() as connection:
        change = controls.resume(connection, system, actor=who.name, reason=reason, now=now)
    return RedirectResponse(f"/actions/{change.action_id}", status_code=303)


ROUTES = [
    Route("/downstream", downstream, name="downstream"),
    Route("/downstream/{system}/pause", pause, methods=["POST"], name="pause"),
    Route("/downstream/{system}/resume", resume, methods=["POST"], name="resume"),
]
