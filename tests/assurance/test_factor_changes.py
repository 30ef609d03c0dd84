"""Changing the factors that protect an account: what proofing binds, fresh
re-authentication before a change, high sessions for strong codes, and a mail each time.

Each test plays a browser over HTTP against the app on the test database.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
from sqlalchemy import select

from idp import assurance
from idp.accounts import factors, proofing, recovery_codes
from idp.accounts.passwords import passwords_for
from idp.db.models import Account, LoginSession, MailMessage, SecondFactor
from tests.assurance import factories

HIGH = assurance.HIGH
PASSWORD = "Rathausuhr schlägt dreizehn"


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _account(db, settings, proofing_level: str = "low") -> int:
    with db.unit_of_work() as session:
        owner = factories.account(session, proofing=proofing_level)
        owner.password_hash = passwords_for(settings).hash(PASSWORD)
        return owner.id


def _browser(client, db, settings, owner_id: int):
    """``client`` signed in to the account with the password, just now."""
    client.cookies.clear()
    with db.unit_of_work() as session:
        token, _ = factories.login(session, session.get(Account, owner_id), settings)
    client.cookies.set("idp_session", token)
    return client


def _enrol_totp(client, clock) -> tuple[str, object]:
    """Add an authenticator app through the security pages; (its secret, the answer)."""
    page = client.get("/account/security/totp")
    assert page.status_code == 200, page.headers.get("location")
    secret = re.search(r'data-secret="([A-Z2-7]+)"|<code[^>]*>([A-Z2-7 ]+)</code>', page.text)
    key = (secret.group(1) or secret.group(2)).replace(" ", "")
    flow = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/account/security/totp",
        data={
            "csrf_token": _csrf(page.text),
            "flow": flow,
            "code": pyotp.TOTP(key).at(clock.now()),
            "label": "Telefon",
        },
        follow_redirects=False,
    )
    return key, answer


def _mails(db, owner_id: int) -> list[MailMessage]:
    with db.unit_of_work() as session:
        email = session.get(Account, owner_id).email
        return list(
            session.scalars(
                select(MailMessage).where(
                    MailMessage.recipient == email, MailMessage.template == "factor_changed"
                )
            )
        )


def test_a_factor_planted_with_the_password_alone_never_reaches_high_after_identification(
    client, db, settings, clock
):
    owner_id = _account(db, settings)
    # Someone with the stolen password adds an authenticator app of their own.
    attacker = _browser(client, db, settings, owner_id)
    secret, answer = _enrol_totp(attacker, clock)
    assert answer.status_code == 303
    # The citizen is identified at a city office, confirming none of the account's factors.
    with db.unit_of_work() as session:
        owner = session.get(Account, owner_id)
        proofing.record_proofing(
            session, owner, factories.verified_identity(session), proven_factors=[]
        )
        assert factors.enrolled_bindings(session, owner_id) == {"low_session"}

    # The stolen password and the planted app do not make a high session.
    attacker = _browser(client, db, settings, owner_id)
    clock.advance(timedelta(seconds=30))
    page = attacker.get("/step-up", params={"return_to": "/account", "acr": HIGH})
    assert 'value="totp"' not in page.text  # only the ways to identification are offered
    refused = attacker.post(
        "/step-up",
        data={
            "csrf_token": _csrf(attacker.get("/account/security").text),
            "return_to": "/account",
            "acr": HIGH,
            "method": "totp",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        follow_redirects=False,
    )
    assert refused.status_code == 400
    with db.unit_of_work() as session:
        login = session.scalars(select(LoginSession).order_by(LoginSession.id.desc())).first()
        owner = session.get(Account, owner_id)
        level = assurance.session_acr(
            factors.facts(session, owner, login), assurance.load_policy(settings)
        )
    assert level != HIGH


def test_adding_a_factor_in_a_password_session_left_open_asks_for_the_password_again(
    client, db, settings, clock
):
    owner_id = _account(db, settings)
    browser = _browser(client, db, settings, owner_id)
    clock.advance(timedelta(minutes=settings.reauth_minutes + 1))
    asked = browser.get("/account/security/totp", follow_redirects=False)
    assert asked.status_code == 303
    target = urlsplit(asked.headers["location"])
    assert target.path == "/account/confirm"
    assert parse_qs(target.query)["return_to"] == ["/account/security/totp"]

    page = browser.get(asked.headers["location"])
    assert 'name="password"' in page.text and 'name="code"' not in page.text
    wrong = browser.post(
        "/account/confirm",
        data={
            "csrf_token": _csrf(page.text),
            "method": "password",
            "return_to": "/account/security/totp",
            "password": "nicht mein Passwort",
        },
        follow_redirects=False,
    )
    assert wrong.status_code == 400
    assert 'aria-invalid="true"' in wrong.text
    right = browser.post(
        "/account/confirm",
        data={
            "csrf_token": _csrf(page.text),
            "method": "password",
            "return_to": "/account/security/totp",
            "password": PASSWORD,
        },
        follow_redirects=False,
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/account/security/totp"
    _, answer = _enrol_totp(browser, clock)
    assert answer.status_code == 303


def test_with_a_factor_enrolled_a_change_needs_that_factor_not_the_password(
    client, db, settings, clock
):
    owner_id = _account(db, settings)
    browser = _browser(client, db, settings, owner_id)
    secret, _ = _enrol_totp(browser, clock)
    # A fresh password login is not enough now that the account has a factor.
    browser = _browser(client, db, settings, owner_id)
    asked = browser.get("/account/security/passkey", follow_redirects=False)
    assert urlsplit(asked.headers["location"]).path == "/account/confirm"
    page = browser.get(asked.headers["location"])
    assert 'name="code"' in page.text and 'name="password"' not in page.text
    by_password = browser.post(
        "/account/confirm",
        data={
            "csrf_token": _csrf(page.text),
            "method": "password",
            "return_to": "/account/security/passkey",
            "password": PASSWORD,
        },
        follow_redirects=False,
    )
    assert by_password.status_code == 200  # the page again: the password does not count
    assert browser.get("/account/security/passkey", follow_redirects=False).status_code == 303

    clock.advance(timedelta(seconds=30))
    confirmed = browser.post(
        "/account/confirm",
        data={
            "csrf_token": _csrf(page.text),
            "return_to": "/account/security/passkey",
            "method": "totp",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert browser.get("/account/security/passkey").status_code == 200


def test_removing_a_factor_needs_a_recent_confirmation_and_mails_the_citizen(
    client, db, settings, clock
):
    owner_id = _account(db, settings)
    browser = _browser(client, db, settings, owner_id)
    secret, _ = _enrol_totp(browser, clock)
    assert [m.context["change"] for m in _mails(db, owner_id)] == ["added"]
    with db.unit_of_work() as session:
        factor_id = session.scalars(
            select(SecondFactor.id).where(SecondFactor.account_id == owner_id)
        ).one()

    clock.advance(timedelta(minutes=settings.reauth_minutes + 1))
    page = browser.get("/account/security")
    remove = f"/account/security/factors/{factor_id}/remove"
    asked = browser.post(remove, data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert urlsplit(asked.headers["location"]).path == "/account/confirm"
    confirmed = browser.post(
        "/account/confirm",
        data={
            "csrf_token": _csrf(page.text),
            "return_to": "/account/security",
            "method": "totp",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    removed = browser.post(remove, data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert removed.headers["location"] == "/account/security?done=removed"
    assert [m.context["change"] for m in _mails(db, owner_id)] == ["added", "removed"]


def test_a_password_session_cannot_replace_recovery_codes_bound_at_identification(
    client, db, settings
):
    owner_id = _account(db, settings, proofing_level="high")
    with db.unit_of_work() as session:
        codes = recovery_codes.generate(
            session, session.get(Account, owner_id), "proofing", factories.code_digests(settings)
        )
    browser = _browser(client, db, settings, owner_id)
    page = browser.get("/account/security")
    refused = browser.post(
        "/account/security/recovery-codes",
        data={"csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert urlsplit(refused.headers["location"]).path == "/step-up"
    assert parse_qs(urlsplit(refused.headers["location"]).query)["acr"] == [HIGH]
    with db.unit_of_work() as session:
        owner = session.get(Account, owner_id)
        assert recovery_codes.remaining(session, owner_id) == recovery_codes.COUNT
        digests = factories.code_digests(settings)
        assert recovery_codes.use(session, owner, codes[0], digests) is not None  # the old set
    assert _mails(db, owner_id) == []
