"""`flowfleet console` as an operator starts it: a password hash, a refusal to listen unguarded, the embedded demo."""

from __future__ import annotations

import io
import re

import pytest
from starlette.testclient import TestClient

from tests.support.fleet_run import Cli
from workers.cli import console as console_command
from workers.console.app import create_app
from workers.console.config import ConsoleConfig
from workers.console.passwords import verify_password
from workers.settings import Settings


def test_hash_password_prints_a_hash_that_verifies_and_not_the_password(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("night-shift\n"))
    ran = cli("console", "--hash-password")
    assert ran.code == 0
    stored = ran.out.strip()
    assert verify_password("night-shift", stored) and "night-shift" not in stored


def test_the_command_refuses_a_public_address_without_authentication(cli: Cli) -> None:
    ran = cli("console", "--host", "0.0.0.0")
    assert ran.code == 2
    assert "will not listen on 0.0.0.0 without authentication" in ran.err


def test_console_demo_serves_the_embedded_demos_archive_with_no_services(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's embedded start: `flowfleet console --demo` runs the demo into SQLite and serves that archive."""
    seen: dict[str, str] = {}

    def serve(settings: Settings, config: ConsoleConfig) -> int:  # instead of uvicorn: the same app, in-process
        with TestClient(create_app(settings, config), base_url="http://127.0.0.1:8700") as client:
            seen["overview"] = client.get("/").text
            seen["records"] = client.get("/records?status=any").text
        return 0

    monkeypatch.setattr(console_command, "_serve", serve)
    ran = cli("console", "--demo")
    assert ran.code == 0, ran.err
    assert "running the embedded demo into" in ran.err
    assert 'id="system-erp"' in seen["overview"] and 'href="/records?flow=orders"' in seen["overview"]
    assert len(re.findall(r'<a href="/records/\d+">', seen["records"])) >= 5  # the demo's dead letters
