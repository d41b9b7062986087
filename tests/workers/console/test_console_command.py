"""`flowfleet console` as an operator starts it: a password hash to configure, and a refusal to listen unguarded."""

from __future__ import annotations

import io

import pytest

from tests.support.fleet_run import Cli
from workers.console.passwords import verify_password


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
