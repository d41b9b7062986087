"""The console is safe by default: loopback unless authenticated, roles, CSRF, strict headers, nothing cached."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.support.dead_letters import refused_orders
from tests.support.fleet_run import FleetRun
from tests.workers.console.conftest import BASE, Browser, ErpRules
from workers.console.app import create_app
from workers.console.auth import Authenticator
from workers.console.config import ConsoleConfig, check_binding
from workers.console.passwords import hash_password, verify_password
from workers.settings import ConfigurationError, Settings

PAGES = ("/", "/groups", "/records", "/records?order_id=ORD-1", "/actions", "/downstream")


def test_it_refuses_to_listen_beyond_loopback_without_authentication(users_text: str) -> None:
    with pytest.raises(ConfigurationError, match="without authentication"):
        check_binding(ConsoleConfig(host="0.0.0.0"))  # the refusal under test
    with pytest.raises(ConfigurationError, match="without authentication"):
        check_binding(ConsoleConfig(host="10.1.2.3", proxy_header="X-Forwarded-User"))  # no trusted proxy: no auth
    check_binding(ConsoleConfig(host="127.0.0.1"))
    check_binding(ConsoleConfig(host="::1"))
    check_binding(ConsoleConfig(host="0.0.0.0", users=SecretStr(users_text)))
    check_binding(ConsoleConfig(host="10.1.2.3", proxy_header="X-Forwarded-User", trusted_proxies="10.0.0.0/8"))


def test_the_app_itself_refuses_a_public_bind_without_authentication(settings: Settings, engine: Engine) -> None:
    with pytest.raises(ConfigurationError):
        create_app(settings, ConsoleConfig(host="192.0.2.7"), engine=engine)


def test_passwords_are_kept_as_salted_scrypt_hashes() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first.startswith("scrypt$") and first != second and "s3cret" not in first
    assert verify_password("s3cret", first) and not verify_password("s3cret!", first)
    assert not verify_password("s3cret", "md5$abc")


def test_without_credentials_every_page_asks_for_them(client: TestClient) -> None:
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 401, page
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", auth=("olga", "wrong")).status_code == 401
    assert client.get("/", auth=("nobody", "olga-pw")).status_code == 401


def test_every_page_has_a_strict_policy_and_is_never_cached(viewer: Browser) -> None:
    for page in (*PAGES, "/static/console.css"):
        answer = viewer.get(page)
        assert answer.status_code == 200, page
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        # Not no-referrer: under it chromium posts forms with `Origin: null`, and the CSRF check refuses them all.
        assert answer.headers["referrer-policy"] == "same-origin"
    assert '<script src="/static/console.js"' in viewer.get("/").text
    assert "unsafe-inline" not in viewer.get("/").headers["content-security-policy"]


def test_a_viewer_reads_but_every_write_is_refused(
    viewer: Browser, operator: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:

    [record] = refused_orders(fleet, erp_rules, "ORD-7")
    assert viewer.get(f"/records/{record}").status_code == 200
    writes: tuple[tuple[str, dict[str, str]], ...] = (
        ("/discard", {"group": "x", "reason": "r"}),
        ("/replay", {"flow": "orders", "reason": "r"}),
        (f"/records/{record}/repair/preview", {"patch": "[]"}),
        (f"/records/{record}/repair", {"patch": "[]", "reason": "r"}),
        (f"/records/{record}/restore", {"reason": "r"}),
        (f"/records/{record}/unmask", {"reason": "r"}),
        ("/actions/1/resume", {}),
        ("/downstream/erp/pause", {"reason": "r"}),
        ("/downstream/erp/resume", {"reason": "r"}),
    )
    for url, data in writes:
        assert viewer.post(url, data).status_code == 403, url
    assert "Discard" not in viewer.get(f"/groups/{fleet.dead_letters()[0]['fingerprint']}").text
    assert "Preview the repair" in operator.get(f"/records/{record}").text


def test_an_operator_cannot_unmask(operator: Browser, admin: Browser, fleet: FleetRun, erp_rules: ErpRules) -> None:

    [record] = refused_orders(fleet, erp_rules, "ORD-8", email="zoe.private@example.com")
    assert operator.post(f"/records/{record}/unmask", {"reason": "ticket"}).status_code == 403
    shown = admin.post(f"/records/{record}/unmask", {"reason": "customer asked (T-1)"})
    assert shown.status_code == 200 and "zoe.private@example.com" in shown.text
    log = admin.get("/actions?kind=unmask").text
    assert "ada" in log and "customer asked (T-1)" in log


def test_a_cross_site_post_is_refused_even_with_the_users_credentials_and_token(
    operator: Browser, fleet: FleetRun, erp_rules: ErpRules
) -> None:

    [record] = refused_orders(fleet, erp_rules, "ORD-9")
    data = {"ids": "", "flow": "orders", "reason": "forged"}
    assert operator.post("/discard", data, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    forged_origin = {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}
    assert operator.post("/discard", data, headers=forged_origin).status_code == 403
    no_token = operator.client.post(
        "/discard", data=data, **operator.credentials, headers={"Origin": BASE}, follow_redirects=False
    )
    assert no_token.status_code == 403
    wrong_token = operator.client.post(
        "/discard", data={**data, "csrf_token": "0" * 64}, **operator.credentials, headers={"Origin": BASE}
    )
    assert wrong_token.status_code == 403
    assert operator.get(f"/records/{record}").text.count(">open<") >= 1
    assert operator.post("/discard", data).status_code == 303  # the same POST from the console's own form


def test_a_proxy_header_is_believed_only_from_a_configured_proxy_address(
    settings: Settings, engine: Engine, users_text: str
) -> None:
    config = ConsoleConfig(users=SecretStr(users_text), proxy_header="X-Forwarded-User", trusted_proxies="10.9.0.0/16")
    app = create_app(settings, config, engine=engine)
    header = {"X-Forwarded-User": "olga"}
    with TestClient(app, base_url=BASE, client=("10.9.1.2", 4000)) as through_proxy:
        page = through_proxy.get("/", headers=header)
        assert page.status_code == 200 and "olga · operator" in page.text
        assert "sso-user · viewer" in through_proxy.get("/", headers={"X-Forwarded-User": "sso-user"}).text
    with TestClient(app, base_url=BASE, client=("203.0.113.5", 4000)) as direct:
        assert direct.get("/", headers=header).status_code == 401


def test_on_loopback_without_users_the_local_user_is_the_configured_role() -> None:
    local = Authenticator(ConsoleConfig(local_role="viewer")).local
    assert local is not None and local.role == "viewer"
    assert Authenticator(ConsoleConfig(users=SecretStr("a:viewer:-"), proxy_header="X")).local is None


def test_every_form_that_posts_carries_the_users_token(operator: Browser, fleet: FleetRun, erp_rules: ErpRules) -> None:
    [record] = refused_orders(fleet, erp_rules, "ORD-10")
    fingerprint = fleet.dead_letters()[0]["fingerprint"]
    token = operator.token()
    for url in (f"/records/{record}", f"/groups/{fingerprint}", f"/replay?group={fingerprint}", "/downstream"):
        page = operator.get(url).text
        forms = re.findall(r'<form method="post".*?</form>', page, flags=re.S)
        assert forms, url
        for form in forms:
            assert f'name="csrf_token" value="{token}"' in form, (url, form[:120])
