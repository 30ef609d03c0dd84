"""Registration, email verification and the account page, over HTTP with real mail."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

import httpx
from sqlalchemy import select

from idp.accounts.passwords import passwords_for
from idp.accounts.registration import CODE_PURPOSE
from idp.db.models import Account, AuditEvent, Flow, MailMessage
from idp.keys.secret import CodeDigests, load_secret_key
from tests.accounts.conftest import STRONG, code, csrf_token, link, login, register, submit
from tests.oidc import factories


def _account(db, address):
    with db.unit_of_work() as session:
        return session.scalar(select(Account).where(Account.email == address))


def test_registering_sends_a_mail_whose_link_verifies_the_address(app_client, mailbox, db):
    response = register(app_client, "Anna@Example.de")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/verify-email?flow=")
    page = app_client.get(response.headers["location"])
    assert "anna@example.de" in page.text
    assert _account(db, "anna@example.de").proofing_level == "none"

    [mail] = mailbox.wait_for("anna@example.de")
    assert mail["Subject"] == "Bitte bestätigen Sie Ihre E-Mail-Adresse"
    confirm = app_client.get(link(mail, "/verify-email"))
    assert confirm.status_code == 200
    # The link only shows a button: fetching it verifies nothing.
    assert _account(db, "anna@example.de").email_verified_at is None
    flow, token = link(mail, "/verify-email").split("flow=")[1].split("&token=")
    done = app_client.post(
        "/verify-email",
        data={"flow": flow, "token": token, "csrf_token": csrf_token(confirm.text)},
    )
    assert done.status_code == 200
    assert "E-Mail-Adresse bestätigt" in done.text
    account = _account(db, "anna@example.de")
    assert account.email_verified_at is not None
    assert account.proofing_level == "low"
    # The registering browser is logged in, and that is the account's last login.
    assert "anna@example.de" in app_client.get("/account").text
    assert account.last_login_at is not None

    # Single use (from a page of the new session: logging in rotated the CSRF cookie).
    again = app_client.post(
        "/verify-email",
        data={
            "flow": flow,
            "token": token,
            "csrf_token": csrf_token(app_client.get("/login").text),
        },
    )
    assert again.status_code == 400
    assert "schon benutzt" in again.text


def test_the_code_from_the_mail_verifies_too(app_client, mailbox, db):
    location = register(app_client, "ben@example.de").headers["location"]
    [mail] = mailbox.wait_for("ben@example.de")
    wrong = submit(
        app_client,
        location,
        "/verify-email",
        {"flow": location.split("flow=")[1], "code": "000000"},
    )
    assert wrong.status_code == 400
    assert "Der Code stimmt nicht" in wrong.text
    right = submit(
        app_client,
        location,
        "/verify-email",
        {"flow": location.split("flow=")[1], "code": code(mail)},
    )
    assert right.status_code == 200
    assert _account(db, "ben@example.de").proofing_level == "low"


def test_the_code_is_stored_keyed_with_the_service_secret(
    app_client, account_settings, mailbox, db
):
    flow_id = register(app_client, "kai@example.de").headers["location"].split("flow=")[1]
    [mail] = mailbox.wait_for("kai@example.de")
    with db.unit_of_work() as session:
        stored = session.get(Flow, flow_id).state["code_digest"]
    # A dump alone does not give the code away (a million SHA-256 guesses would).
    assert stored != hashlib.sha256((flow_id + code(mail)).encode()).hexdigest()
    digests = CodeDigests(load_secret_key(account_settings))
    assert stored == digests.digest(CODE_PURPOSE, flow_id + code(mail)).hex()


def test_the_code_allows_five_tries(app_client, mailbox, db):
    location = register(app_client, "carla@example.de").headers["location"]
    [mail] = mailbox.wait_for("carla@example.de")
    flow = location.split("flow=")[1]
    for _ in range(5):
        submit(app_client, location, "/verify-email", {"flow": flow, "code": "999999"})
    sixth = submit(app_client, location, "/verify-email", {"flow": flow, "code": code(mail)})
    assert "zu oft falsch" in sixth.text
    assert _account(db, "carla@example.de").email_verified_at is None


def test_verification_expires_after_a_day(app_client, mailbox, db, clock):
    register(app_client, "dora@example.de")
    [mail] = mailbox.wait_for("dora@example.de")
    clock.advance(timedelta(hours=24, minutes=1))
    page = app_client.get(link(mail, "/verify-email"))
    flow, token = link(mail, "/verify-email").split("flow=")[1].split("&token=")
    response = app_client.post(
        "/verify-email", data={"flow": flow, "token": token, "csrf_token": csrf_token(page.text)}
    )
    assert response.status_code == 400
    assert _account(db, "dora@example.de").email_verified_at is None


def test_resend_waits_for_the_cool_down_and_replaces_the_code(app_client, mailbox, db, clock):
    location = register(app_client, "emil@example.de").headers["location"]
    flow = location.split("flow=")[1]
    [first] = mailbox.wait_for("emil@example.de")
    too_soon = submit(app_client, location, "/verify-email/resend", {"flow": flow})
    assert too_soon.status_code == 429
    assert "Bitte warten Sie noch" in too_soon.text
    clock.advance(timedelta(seconds=61))
    resent = submit(
        app_client, location, "/verify-email/resend", {"flow": flow}, follow_redirects=False
    )
    assert resent.status_code == 303
    _, second = mailbox.wait_for("emil@example.de", count=2)
    old = submit(app_client, location, "/verify-email", {"flow": flow, "code": code(first)})
    assert old.status_code == 400 or code(first) == code(second)
    new = submit(app_client, location, "/verify-email", {"flow": flow, "code": code(second)})
    assert new.status_code == 200


def test_registration_refuses_weak_passwords_with_reasons(app_client, db):
    cases = {
        "kurz": "mindestens 8 Zeichen",
        "passwort": "sehr verbreitet",
        "schalke04": "sehr verbreitet",
        "x" * 300: "höchstens 256 Zeichen",
        "frieda@example.de": "nicht Ihre E-Mail-Adresse",
    }
    for password, message in cases.items():
        response = register(app_client, "frieda@example.de", password)
        assert response.status_code == 400, password
        assert message in response.text, password
    assert _account(db, "frieda@example.de") is None


def test_long_passphrases_without_composition_rules_are_fine(app_client, db):
    passphrase = "ein sehr langer satz nur aus kleinbuchstaben " * 2
    assert register(app_client, "greta@example.de", passphrase).status_code == 303
    assert login(app_client, "greta@example.de", passphrase).status_code == 303


def test_registration_lists_every_problem_in_the_error_summary(app_client):
    response = submit(
        app_client, "/register", "/register", {"email": "kein-at", "password": "kurz"}
    )
    assert response.status_code == 400
    assert 'class="error-summary"' in response.text
    for anchor in ('href="#email"', 'href="#password"', 'href="#privacy_consent"'):
        assert anchor in response.text
    assert 'aria-invalid="true"' in response.text


def test_registration_and_verification_are_audited(app_client, mailbox, db):
    register(app_client, "hans@example.de")
    mailbox.wait_for("hans@example.de")
    with db.unit_of_work() as session:
        events = session.scalars(select(AuditEvent.event)).all()
    assert "account.registered" in events


def test_a_delivered_mail_keeps_no_link_in_the_outbox(app_client, mailbox, db):
    register(app_client, "ida@example.de")
    mailbox.wait_for("ida@example.de")
    # The app's sender records the delivery just after the SMTP server took the mail: poll
    # for that background write (no clock involved).
    deadline = time.monotonic() + 5
    while True:
        with db.unit_of_work() as session:
            row = session.scalars(select(MailMessage)).one()
        if row.status == "sent" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row.status == "sent" and row.context == {}


def test_account_page_needs_a_login(app_client):
    response = app_client.get("/account", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?return_to=%2Faccount"


def test_strong_password_constant_is_accepted(app_client):
    assert register(app_client, "jan@example.de", STRONG).status_code == 303


def test_an_address_with_rfc5322_specials_is_refused_and_gets_no_mail(app_client, mailbox, db):
    # `x;y@a.example` was accepted and mail systems delivered it to `x`.
    for address in ("x;y@a.example", 'x"y@a.example', "x,y@a.example", "<x>@a.example"):
        response = register(app_client, address)
        assert response.status_code == 400, address
        assert "im Format name@beispiel.de" in response.text
        assert _account(db, address) is None
    forgot = submit(app_client, "/password/forgot", "/password/forgot", {"email": "x(y)@a.example"})
    assert forgot.status_code == 400
    assert "im Format name@beispiel.de" in forgot.text
    with db.unit_of_work() as session:
        assert session.scalar(select(MailMessage.id)) is None


def test_the_login_after_verifying_the_address_rotates_the_csrf_cookie(app_client, mailbox, db):
    location = register(app_client, "dora@example.de").headers["location"]
    [mail] = mailbox.wait_for("dora@example.de")
    before = app_client.cookies["idp_csrf"]
    done = submit(
        app_client,
        location,
        "/verify-email",
        {"flow": location.split("flow=")[1], "code": code(mail)},
    )
    assert done.status_code == 200
    assert "dora@example.de" in app_client.get("/account").text, "logged in"
    assert app_client.cookies["idp_csrf"] != before
    # The page shown with the new session carries tokens of the new cookie.
    assert submit(app_client, "/logout", "/logout", {}).status_code in (200, 303)


class HeldHasher:
    """The process's real argon2id hasher, holding each new hash until ``release`` is set:
    a registration can be stopped mid-hash (``hashing`` is set once one is)."""

    def __init__(self, real) -> None:
        self.real = real
        self.hashing = threading.Event()
        self.release = threading.Event()

    def hash(self, password: str) -> str:
        self.hashing.set()
        self.release.wait(30)
        return self.real.hash(password)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def _refresh_token(server, db) -> tuple[factories.ClientInfo, str]:
    """A refresh token of a code flow (a client, a logged-in account, offline access)."""
    info = factories.client(db)
    browser = factories.Browser(server.url)
    browser.log_in(factories.login_token(db, factories.account(db), server.settings))
    query = urlencode(
        {
            "response_type": "code",
            "client_id": info.client_id,
            "redirect_uri": info.redirect_uri,
            "scope": "openid offline_access",
            "state": "st",
            "nonce": "n",
        }
    )
    code_ = factories.callback_params(browser.open(f"{server.url}/authorize?{query}"))["code"]
    tokens = httpx.post(
        f"{server.url}/token",
        data={"grant_type": "authorization_code", "code": code_, "redirect_uri": info.redirect_uri},
        auth=(info.client_id, info.client_secret),
    )
    assert tokens.status_code == 200, tokens.text
    return info, tokens.json()["refresh_token"]


def test_a_refresh_token_rotates_while_a_registration_is_hashing(live_mail_server, db):
    # The hash comes before the registration's transaction: on SQLite, which writes one
    # transaction at a time, a rotation would otherwise wait for the hash (or give up).
    info, refresh_token = _refresh_token(live_mail_server, db)
    passwords = passwords_for(live_mail_server.settings)  # the server's, built once
    held = HeldHasher(passwords.hasher)
    passwords.hasher = held
    try:
        with ThreadPoolExecutor(1) as browser, httpx.Client(base_url=live_mail_server.url) as http:
            registering = browser.submit(register, http, "mia@example.de")
            assert held.hashing.wait(15), "the registration never began its hash"
            rotated = httpx.post(
                f"{live_mail_server.url}/token",
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=(info.client_id, info.client_secret),
                timeout=30,
            )
            held.release.set()
            registered = registering.result(timeout=30)
    finally:
        held.release.set()
        passwords.hasher = held.real
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] != refresh_token
    assert registered.status_code == 303
    assert _account(db, "mia@example.de") is not None
