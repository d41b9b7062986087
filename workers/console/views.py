"""How a console endpoint is declared: the role it needs, CSRF on every POST, the template it renders, the headers.

An endpoint is a plain synchronous function of (request, principal, form); the wrapper authenticates,
authorizes, checks CSRF, and runs it in a worker thread, since the archive is read with blocking SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from workers.console import csrf
from workers.console.auth import Forbidden, Principal, Unauthenticated
from workers.console.context import Console

View = Callable[[Request, Principal, Mapping[str, str]], Response]
Endpoint = Callable[[Request], Awaitable[Response]]

#: Every response: nothing cached, nothing framed, nothing loaded but our own files.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Refused(Exception):
    """The request cannot be done as asked (a bad filter, a record that is not open); shown as a 400 page."""


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def endpoint(role: str, *, post: bool = False) -> Callable[[View], Endpoint]:
    """Wrap a view: it needs `role`; a POST also needs a same-origin request and the user's CSRF token."""

    def wrap(view: View) -> Endpoint:
        @functools.wraps(view)
        async def run(request: Request) -> Response:
            console = console_of(request)
            try:
                who = console.authenticator.principal(request)
                if not who.may(role):
                    raise Forbidden
                form: Mapping[str, str] = {}
                if post:
                    raw = await request.form()
                    form = {key: value for key, value in raw.items() if isinstance(value, str)}
                    csrf.check(request, form.get(csrf.FIELD), secret=console.secret, user=who.name)
                return await run_in_threadpool(view, request, who, form)
            except Unauthenticated:
                return Response(
                    "authentication required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="flowfleet console", charset="UTF-8"'},
                )
            except Forbidden:
                return message(request, None, 403, "Not allowed", f"This needs the {role} role.")
            except csrf.CsrfRefused as error:
                return message(request, None, 403, "Refused: not from this console's own form", str(error))
            except Refused as error:
                return message(request, None, 400, "Cannot do that", str(error))

        return run

    return wrap


def reason_of(form: Mapping[str, str], what: str = "this") -> str:
    """The form's reason for a change, required: it is recorded in the audit log."""
    reason = form.get("reason", "").strip()
    if not reason:
        raise Refused(f"{what} needs a reason (it is recorded in the audit log)")
    return reason


def render(request: Request, who: Principal | None, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    token = None if who is None else csrf.token(console.secret, who.name)
    html = console.templates.get_template(template).render(
        request=request, who=who, csrf_field=csrf.FIELD, csrf_token=token, **context
    )
    return HTMLResponse(html, status_code=status)


def message(request: Request, who: Principal | None, status: int, title: str, text: str) -> HTMLResponse:
    return render(request, who, "message.html", status=status, title=title, text=text)
