"""The demo portal app: `idp demo` registers it, a newcomer clicks through login."""

from __future__ import annotations

from litestar.testing import TestClient
from sqlalchemy import func, select

from idp.app import create_app
from idp.db.models import Account, Client
from idp.oidc.demo import EMAIL, PASSWORD, ensure_demo
from tests.conftest import make_settings
from tests.oidc import factories


def test_the_demo_app_logs_the_demo_account_in_and_out(live_server, db):
    with db.unit_of_work() as session:
        ensure_demo(session, live_server.settings)
    browser = factories.Browser(live_server.url)
    page = browser.open(f"{live_server.url}/demo/login", credentials=(EMAIL, PASSWORD))
    assert page.status_code == 200, browser.pages
    assert str(page.url).endswith("/demo")
    assert EMAIL in page.text and "nonce" in page.text and "at_hash" in page.text

    logged_out = browser.open(f"{live_server.url}/demo/logout")
    assert str(logged_out.url).endswith("/demo")
    assert "/demo/login" in logged_out.text
    assert browser.http.get("/account").status_code in (302, 303), "the SSO session ended too"


def test_running_idp_demo_again_keeps_one_client_and_one_account(db, keys_dir):
    settings = make_settings(db.url, keys_dir)
    for _ in range(2):
        with db.unit_of_work() as session:
            ensure_demo(session, settings)
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Client)) == 1
        assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_there_is_no_demo_app_in_production(db, keys_dir, clock):
    settings = make_settings(
        db.url,
        keys_dir,
        environment="production",
        issuer="https://id.example.de",
        smtp_host="mail.example.de",
    )
    with TestClient(create_app(settings, clock=clock), base_url=settings.issuer) as client:
        assert client.get("/demo").status_code == 404
