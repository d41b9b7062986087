"""The console over the real in-memory fleet's archive: users of each role, a client that posts like its forms."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRun
from workers.console.app import create_app
from workers.console.config import ConsoleConfig
from workers.console.passwords import hash_password
from workers.settings import Settings

BASE = "http://console.test"
#: (name, role, password) of the test's users; hashed once per session (scrypt is slow on purpose).
PEOPLE = (("vera", "viewer", "vera-pw"), ("olga", "operator", "olga-pw"), ("ada", "admin", "ada-pw"))
_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


@pytest.fixture(scope="session")
def users_text() -> str:
    return "\n".join(f"{name}:{role}:{hash_password(password)}" for name, role, password in PEOPLE)


@pytest.fixture
def config(users_text: str) -> ConsoleConfig:
    return ConsoleConfig(users=SecretStr(users_text), secret=SecretStr("test-secret"))


@dataclass
class Browser:
    """A TestClient that sends one user's credentials and posts the way the console's own forms do."""

    client: TestClient
    auth: tuple[str, str] | None

    @property
    def credentials(self) -> dict[str, Any]:
        """The `auth` argument of each request; none at all for an anonymous browser."""
        return {} if self.auth is None else {"auth": self.auth}

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **self.credentials, **kwargs)

    def token(self) -> str:
        found = _CSRF.search(self.get("/records").text)
        assert found, "the page carries no CSRF token"
        return found.group(1)

    def post(self, url: str, data: Mapping[str, str], *, headers: Mapping[str, str] | None = None) -> Any:
        sent = {"csrf_token": self.token(), **data}
        given = {"Origin": BASE, "Sec-Fetch-Site": "same-origin", **(headers or {})}
        return self.client.post(url, data=sent, headers=given, follow_redirects=False, **self.credentials)

    def finished(self, action_url: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll an action's JSON (as the page's script does) until it is no longer running."""
        deadline = time.monotonic() + timeout
        while True:
            state: dict[str, Any] = self.get(action_url + ".json").json()
            if state["status"] != "running" or time.monotonic() > deadline:
                return state
            time.sleep(0.05)


@pytest.fixture
def published(fleet: FleetRun) -> list[tuple[str, str]]:
    """What the console's replays published, straight into the in-memory fleet (each settled before the next)."""
    return []


@pytest.fixture
def client(
    settings: Settings, engine: Engine, fleet: FleetRun, config: ConsoleConfig, published: list[tuple[str, str]]
) -> Iterator[TestClient]:
    class IntoTheFleet:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)
            published.append((exchange, routing_key))
            fleet.settle()

    app = create_app(settings, config, engine=engine, open_publisher=lambda _s: (IntoTheFleet(), lambda: None))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def as_user(client: TestClient, name: str) -> Browser:
    password = {person[0]: person[2] for person in PEOPLE}[name]
    return Browser(client, (name, password))


@pytest.fixture
def viewer(client: TestClient) -> Browser:
    return as_user(client, "vera")


@pytest.fixture
def operator(client: TestClient) -> Browser:
    return as_user(client, "olga")


@pytest.fixture
def admin(client: TestClient) -> Browser:
    return as_user(client, "ada")


class ErpRules:
    """The ERP refuses (400) the orders named in `refused`, inside the handler's transaction (stage `handler`)."""

    def __init__(self, faults: PortFaults) -> None:
        self.refused: set[str] = set()
        faults.responder = self.answer

    def answer(self, _path: str, payload: Mapping[str, Any], _key: str, _attempt: int) -> int:
        return 400 if payload.get("order_id") in self.refused else 200


@pytest.fixture
def erp_rules(faults: PortFaults) -> ErpRules:
    return ErpRules(faults)
