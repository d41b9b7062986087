"""A real console server over an archive the real (in-memory) fleet filled, and Debian's chromium to drive it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.support.fleet_run import FleetRun

# The in-memory fleet and its archive, as the worker tests build them (fixtures, imported to be registered here).
from tests.workers.conftest import (  # noqa: F401  # pytest finds fixtures by name in this module
    database_url,
    engine,
    erp,
    faults,
    fleet,
    fleet_runner,
    settings,
    systems,
)
from workers.console.app import create_app
from workers.console.config import ConsoleConfig
from workers.console.passwords import hash_password
from workers.settings import Settings

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR = ("olga", "olga-night-shift")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def console_url(settings: Settings, engine: Engine, fleet: FleetRun) -> Iterator[str]:  # noqa: F811  # the fixtures imported above
    """The console on a free loopback port, its replays published into the in-memory fleet."""

    class IntoTheFleet:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)
            fleet.settle()

    users = f"{OPERATOR[0]}:operator:{hash_password(OPERATOR[1])}"
    config = ConsoleConfig(users=SecretStr(users), port=_free_port())
    app = create_app(settings, config, engine=engine, open_publisher=lambda _s: (IntoTheFleet(), lambda: None))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console-e2e-server")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the console did not start"
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A page in Debian's chromium, logged in as the operator (Basic auth), with a fresh profile."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (CI installs Debian's chromium package)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright  # only these tests need a browser

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]},
            viewport={"width": 1400, "height": 900},
            color_scheme="dark",
            timezone_id="Europe/Berlin",
        )
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            context.close()
