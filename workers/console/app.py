"""The console as an ASGI application: its routes, its security headers on every answer, and its lifecycle.

Starlette and Jinja2: a small, typed ASGI toolkit and server-rendered HTML, so every page is a plain
form that works without JavaScript and the only script is our own progress poller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.console import actions, downstream, export, pages, replays
from workers.console.auth import Authenticator
from workers.console.config import ConsoleConfig, check_binding
from workers.console.context import STATIC, Console, templates
from workers.console.jobs import OpenPublisher, ReplayJobs, broker_publisher
from workers.console.views import SECURITY_HEADERS
from workers.settings import Settings
from workers.store.db import make_engine
from workers.store.schema import require_current_schema


class SecurityHeaders:
    """Adds the console's security headers to every response, static files and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().title() not in SECURITY_HEADERS]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    settings: Settings,
    config: ConsoleConfig,
    *,
    open_publisher: OpenPublisher = broker_publisher,
    engine: Engine | None = None,
) -> Starlette:
    """The console for one archive. It refuses a non-loopback bind without authentication, and an old schema."""
    check_binding(config)
    engine = engine or make_engine(settings.database_url.get_secret_value())
    require_current_schema(engine)
    console = Console(
        settings=settings,
        config=config,
        engine=engine,
        authenticator=Authenticator(config),
        templates=templates(),
        jobs=ReplayJobs(engine, settings, open_publisher),
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.jobs.stop_all()

    routes = [
        *pages.ROUTES,
        *replays.ROUTES,
        *actions.ROUTES,
        *downstream.ROUTES,
        *export.ROUTES,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app
