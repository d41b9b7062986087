"""Cross-site request forgery: every POST must come from this console's own pages and carry the user's token."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

FIELD = "csrf_token"


class CsrfRefused(Exception):
    """A state change that did not come from one of the console's own forms."""


def token(secret: str, user: str) -> str:
    """The user's token: stateless (an HMAC of the name), so a reload or a second tab keeps working."""
    return hmac.new(secret.encode(), f"csrf:{user}".encode(), hashlib.sha256).hexdigest()


def check(request: Request, form_token: str | None, *, secret: str, user: str) -> None:
    """Same origin (Sec-Fetch-Site, else Origin, one of them required) and the user's token."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused(f"a {site} request may not change anything")
    if origin is not None and origin != _own_origin(request):
        raise CsrfRefused("the request came from another origin")
    if site is None and origin is None:
        raise CsrfRefused("the request says neither its Origin nor its Sec-Fetch-Site")
    if not form_token or not hmac.compare_digest(form_token, token(secret, user)):
        raise CsrfRefused("the form's token is missing or not this user's")


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"
