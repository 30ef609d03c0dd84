"""prompt=create while the browser is already logged in: the registration page is
shown, and the authorization continues with the NEW account (the old session ends,
as every login replaces the session), over a real server with real mail."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from idp.db.models import Account, LoginSession
from tests.accounts.conftest import STRONG, code, live_mail_server, mailbox  # noqa: F401 - fixtures
from tests.conftest import LiveServer
from tests.oidc import factories
from tests.oidc.test_interaction import id_claims
from tests.oidc.test_negative import authorize_url, redeem


@pytest.fixture
def server(live_mail_server: LiveServer) -> LiveServer:  # noqa: F811 - the imported fixture
    """A live server with real mail (tests/accounts/conftest.py)."""
    return live_mail_server


def _subject(db, email: str) -> str:
    with db.unit_of_work() as session:
        return session.scalar(select(Account.subject).where(Account.email == email))


def test_prompt_create_while_logged_in_registers_and_continues_with_the_new_account(
    server,
    db,
    mailbox,  # noqa: F811
    clock,
):
    info = factories.client(db)
    old_id = factories.account(db, "alt@example.de")
    browser = factories.Browser(server.url)
    browser.log_in(factories.login_token(db, old_id, server.settings))
    clock.advance(timedelta(seconds=1))  # that login came before this authorization

    page = browser.open(authorize_url(server, info, prompt="create"))
    assert (page.status_code, urlsplit(str(page.url)).path) == (200, "/register")

    registered = browser.http.post(
        "/register",
        data={
            **factories.form_fields(page.text),
            "email": "neu@example.de",
            "password": STRONG,
            "privacy_consent": "yes",
        },
    )
    assert registered.status_code == 303
    verify_page = browser.http.get(registered.headers["location"])
    (mail,) = mailbox.wait_for("neu@example.de")
    verified = browser.http.post(
        "/verify-email", data={**factories.form_fields(verify_page.text), "code": code(mail)}
    )
    assert verified.status_code == 200
    resume = re.search(r'href="(/authorize/resume/[^"]+)"', verified.text)
    assert resume, verified.text

    params = factories.callback_params(browser.open(resume.group(1)))
    assert params["state"] == "st"
    claims = id_claims(server, redeem(server, info, params["code"]).json()["id_token"])
    assert claims["sub"] == _subject(db, "neu@example.de")
    assert claims["sub"] != _subject(db, "alt@example.de")
    with db.unit_of_work() as session:
        old = session.scalars(select(LoginSession).where(LoginSession.account_id == old_id)).one()
        assert old.ended_at is not None, "registering and logging in replaced the old session"


def test_prompt_create_while_logged_in_can_continue_with_an_existing_account_instead(
    server, db, clock
):
    info = factories.client(db)
    old_id = factories.account(db, "alt@example.de")
    email, password = factories.password_account(db, server.settings, "da@example.de")
    browser = factories.Browser(server.url)
    browser.log_in(factories.login_token(db, old_id, server.settings))
    clock.advance(timedelta(seconds=1))  # that login came before this authorization

    page = browser.open(authorize_url(server, info, prompt="create"))
    assert urlsplit(str(page.url)).path == "/register"
    login_link = re.search(r'href="(/login\?[^"]+)"', page.text)
    assert login_link, "the registration page links to login for those with an account"
    params = factories.callback_params(
        browser.open(login_link.group(1).replace("&amp;", "&"), credentials=(email, password))
    )
    claims = id_claims(server, redeem(server, info, params["code"]).json()["id_token"])
    assert claims["sub"] == _subject(db, "da@example.de")
