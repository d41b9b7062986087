"""A users file (FLOWFLEET_CONSOLE_USERS_FILE) of scrypt hashes: who it lets in, in which role, one clear refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.support.fleet_run import Cli
from tests.workers.console.conftest import BASE, Browser
from workers.console.app import create_app
from workers.console.config import ConsoleConfig
from workers.console.passwords import hash_password
from workers.settings import ConfigurationError, Settings

#: As an operator writes it: a comment, a blank line, one user a line, a proxy-only user.
USERS_FILE = """# flowfleet console users (flowfleet console --hash-password)
vic:viewer:{vic}

oskar:operator:{oskar}   # night shift
sso-admin:admin:-
"""


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "console-users"
    path.write_text(USERS_FILE.format(vic=hash_password("vic-pw"), oskar=hash_password("oskar-pw")), encoding="utf-8")
    return path


@pytest.fixture
def from_file(settings: Settings, engine: Engine, users_file: Path) -> Iterator[TestClient]:
    config = ConsoleConfig(users_file=users_file, host="0.0.0.0")  # a public bind: the file is the authentication
    with TestClient(create_app(settings, config, engine=engine), base_url=BASE) as client:
        yield client


def test_users_from_the_file_sign_in_with_their_passwords_and_act_with_their_roles(
    from_file: TestClient, engine: Engine
) -> None:
    vic, oskar = Browser(from_file, ("vic", "vic-pw")), Browser(from_file, ("oskar", "oskar-pw"))
    assert "vic · viewer" in vic.get("/").text and "oskar · operator" in oskar.get("/").text
    assert vic.post("/downstream/erp/pause", {"reason": "try"}).status_code == 403
    paused = oskar.post("/downstream/erp/pause", {"reason": "ERP upgrade"})
    assert paused.status_code == 303
    assert 'class="actor">oskar<' in oskar.get(paused.headers["location"]).text


def test_a_wrong_password_an_unknown_user_and_a_proxy_only_user_are_refused(from_file: TestClient) -> None:
    assert from_file.get("/", auth=("vic", "oskar-pw")).status_code == 401
    assert from_file.get("/", auth=("vic", "")).status_code == 401
    assert from_file.get("/", auth=("olga", "vic-pw")).status_code == 401
    assert from_file.get("/", auth=("sso-admin", "-")).status_code == 401  # no password: only through the proxy
    assert from_file.get("/").status_code == 401


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("oskar operator s3cret-pw", "line 2: entry 1 is not name:role:hash"),
        ("oskar:operator:s3cret-pw", "line 2: oskar's password is not a hash from `flowfleet console --hash-password`"),
        ("oskar:operator:scrypt$16384$8$1$@@@$@@@", "line 2: oskar's password is not a hash"),
        ("oskar:root:-", "console user 'oskar' has role 'root'"),
    ],
    ids=["not-an-entry", "a-password-not-a-hash", "a-broken-hash", "an-unknown-role"],
)
def test_a_malformed_file_is_one_clear_error_at_start_that_echoes_no_secret(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, says: str
) -> None:
    path = tmp_path / "console-users"
    path.write_text(f"# users\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="console user"):
        ConsoleConfig(users_file=path).known_users()

    monkeypatch.setenv("FLOWFLEET_CONSOLE_USERS_FILE", str(path))
    ran = cli("console", "--host", "0.0.0.0")
    assert ran.code == 2 and ran.out == ""
    [message] = ran.err.splitlines()
    assert says in message and "s3cret" not in message and "Traceback" not in ran.err


def test_a_users_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigurationError, match=r"cannot read FLOWFLEET_CONSOLE_USERS_FILE .*nowhere"):
        ConsoleConfig(users_file=missing).known_users()
