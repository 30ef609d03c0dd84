"""The step-up and security pages over HTTP, with a real database."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
from sqlalchemy import select

from idp import assurance
from idp.accounts import recovery_codes, totp
from idp.db.models import Account, LoginSession, RecoveryCode, SecondFactor
from idp.web.csrf import token_for
from tests.assurance import factories

HIGH = assurance.HIGH


def _signed_in(client, db, settings, proofing="high"):
    """A browser with a password session of a fresh account; returns the account id."""
    with db.unit_of_work() as session:
        owner = factories.account(session, proofing=proofing)
        token, _ = factories.login(session, owner, settings)
        owner_id = owner.id
    client.cookies.set("idp_session", token)
    return owner_id


def _csrf(client) -> str:
    client.get("/privacy")
    return token_for(client.app.state.csrf_key, client.cookies["idp_csrf"])


def _totp_factor(db, services, owner_id, binding):
    """Enrol a TOTP factor directly; returns its secret."""
    with db.unit_of_work() as session:
        owner = session.get(Account, owner_id)
        enrolment = totp.begin(session, owner, services.secret_box, services.settings.issuer)
        code = pyotp.TOTP(enrolment.secret).at(db.clock.now())
        totp.confirm(session, owner, enrolment.flow_id, code, services.secret_box, binding)
    db.clock.advance(timedelta(seconds=totp.STEP))
    return enrolment.secret


def _methods(db, owner_id):
    with db.unit_of_work() as session:
        row = session.scalars(select(LoginSession).where(LoginSession.account_id == owner_id)).one()
        return [entry["method"] for entry in row.methods]


def test_step_up_without_a_session_sends_the_browser_to_login(client):
    response = client.get(
        "/step-up", params={"return_to": "/authorize/resume/x", "acr": HIGH}, follow_redirects=False
    )
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query)["return_to"][0].startswith("/step-up?")


def test_step_up_asks_for_the_bound_totp_and_a_right_code_raises_the_session(
    client, db, settings, services, clock
):
    owner_id = _signed_in(client, db, settings)
    secret = _totp_factor(db, services, owner_id, "proofing")
    page = client.get("/step-up", params={"return_to": "/next", "acr": HIGH})
    assert page.status_code == 200
    assert 'name="code"' in page.text and 'value="totp"' in page.text
    assert "step_up=cancelled" in page.text
    response = client.post(
        "/step-up",
        data={
            "csrf_token": _csrf(client),
            "return_to": "/next",
            "acr": HIGH,
            "method": "totp",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/next")
    assert _methods(db, owner_id) == ["pwd", "otp"]
    again = client.get(
        "/step-up", params={"return_to": "/next", "acr": HIGH}, follow_redirects=False
    )
    assert (again.status_code, again.headers["location"]) == (303, "/next")


def test_a_wrong_code_shows_the_error_and_leaves_the_session_as_it_was(
    client, db, settings, services, clock
):
    owner_id = _signed_in(client, db, settings)
    secret = _totp_factor(db, services, owner_id, "proofing")
    right = pyotp.TOTP(secret).at(clock.now())
    wrong = f"{(int(right) + 500000) % 1000000:06d}"
    response = client.post(
        "/step-up",
        data={
            "csrf_token": _csrf(client),
            "return_to": "/next",
            "acr": HIGH,
            "method": "totp",
            "code": wrong,
        },
    )
    assert response.status_code == 400
    assert 'class="error-summary"' in response.text and 'aria-invalid="true"' in response.text
    assert _methods(db, owner_id) == ["pwd"]


def test_a_factor_added_in_a_low_session_is_not_offered_for_high(client, db, settings, services):
    owner_id = _signed_in(client, db, settings)
    _totp_factor(db, services, owner_id, "low_session")
    page = client.get("/step-up", params={"return_to": "/next", "acr": HIGH})
    assert 'value="totp"' not in page.text
    assert "Bürgerbüro" in page.text and "eID" in page.text


def test_an_unproofed_account_is_shown_the_ways_to_identification(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    page = client.get(
        "/step-up", params={"return_to": "/next", "acr": "STORK-QAA-Level-4", "lang": "en"}
    )
    assert page.status_code == 200
    assert "not identified" in page.text and "citizens&#39; office" in page.text
    assert "not available yet" in page.text


def test_cancel_returns_to_the_flow_with_the_cancel_marker(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    page = client.get("/step-up", params={"return_to": "/authorize/resume/abc?x=1", "acr": HIGH})
    assert 'href="/authorize/resume/abc?x=1&amp;step_up=cancelled"' in page.text


def test_step_up_refuses_foreign_return_addresses_and_unknown_levels(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    page = client.get("/step-up", params={"return_to": "https://evil.test/", "acr": HIGH})
    assert 'href="/account?step_up=cancelled"' in page.text
    assert client.get("/step-up", params={"return_to": "/x", "acr": "gold"}).status_code == 400


def test_a_recovery_code_bound_at_proofing_steps_up(client, db, settings):
    owner_id = _signed_in(client, db, settings)
    with db.unit_of_work() as session:
        codes = recovery_codes.generate(
            session, session.get(Account, owner_id), "proofing", factories.code_digests(settings)
        )
    response = client.post(
        "/step-up",
        data={
            "csrf_token": _csrf(client),
            "return_to": "/next",
            "acr": HIGH,
            "method": "recovery",
            "code": codes[0],
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _methods(db, owner_id) == ["pwd", "otp"]


def test_totp_enrolment_through_the_security_pages_binds_to_a_low_session(
    client, db, settings, clock
):
    owner_id = _signed_in(client, db, settings)
    page = client.get("/account/security/totp")
    assert page.status_code == 200 and "<svg" in page.text
    secret = re.search(r"<code>([A-Z2-7]+)</code>", page.text).group(1)
    flow = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/account/security/totp",
        data={
            "csrf_token": _csrf(client),
            "flow": flow,
            "label": "Telefon",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/account/security?done=totp"
    overview = client.get("/account/security")
    assert "Telefon" in overview.text
    with db.unit_of_work() as session:
        factor = session.scalars(select(SecondFactor)).one()
        assert (factor.account_id, factor.binding) == (owner_id, "low_session")


def test_removing_a_strong_factor_needs_a_high_session(client, db, settings, services, clock):
    owner_id = _signed_in(client, db, settings)
    secret = _totp_factor(db, services, owner_id, "proofing")
    with db.unit_of_work() as session:
        factor_id = session.scalars(select(SecondFactor.id)).one()
    token = _csrf(client)
    refused = client.post(
        f"/account/security/factors/{factor_id}/remove",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert refused.headers["location"].startswith("/step-up?")
    client.post(
        "/step-up",
        data={
            "csrf_token": token,
            "return_to": "/account/security",
            "acr": HIGH,
            "method": "totp",
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
    )
    removed = client.post(
        f"/account/security/factors/{factor_id}/remove",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert removed.headers["location"] == "/account/security?done=removed"
    with db.unit_of_work() as session:
        assert session.scalars(select(SecondFactor)).all() == []


def test_new_recovery_codes_are_shown_once(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    page = client.post("/account/security/recovery-codes", data={"csrf_token": _csrf(client)})
    assert page.status_code == 200
    assert len(re.findall(r"<code>[0-9a-z]{5}-[0-9a-z]{5}</code>", page.text)) == 10


def test_recovery_codes_are_stored_as_digests_keyed_with_the_service_secret(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    page = client.post("/account/security/recovery-codes", data={"csrf_token": _csrf(client)})
    codes = [c.replace("-", "") for c in re.findall(r"<code>([0-9a-z-]{11})</code>", page.text)]
    with db.unit_of_work() as session:
        stored = set(session.scalars(select(RecoveryCode.code_digest)))
    # A dump alone does not test guesses: no plain SHA-256, only the secret's HMAC matches.
    assert not stored & {hashlib.sha256(code.encode()).digest() for code in codes}
    digests = factories.code_digests(settings)
    assert stored == {digests.digest(recovery_codes.PURPOSE, code) for code in codes}


def test_the_account_page_leads_to_the_security_and_apps_pages(client, db, settings):
    _signed_in(client, db, settings, proofing="low")
    account = client.get("/account")
    assert 'href="/account/security"' in account.text
    assert 'href="/account/apps"' in account.text


def test_every_security_page_without_a_session_sends_the_browser_to_login(client):
    csrf = _csrf(client)
    pages = [
        ("GET", "/account/security", None),
        ("GET", "/account/security/totp", None),
        ("GET", "/account/security/passkey", None),
        ("POST", "/account/security/totp", {"code": "123456", "flow": "x"}),
        ("POST", "/account/security/passkey", {"credential": "{}", "flow": "x"}),
        ("POST", "/account/security/recovery-codes", {}),
        ("POST", "/account/security/factors/1/remove", {}),
    ]
    for method, path, form in pages:
        data = None if form is None else {**form, "csrf_token": csrf}
        response = client.request(method, path, data=data, follow_redirects=False)
        assert response.status_code == 303, (method, path, response.text[:200])
        target = urlsplit(response.headers["location"])
        assert target.path == "/login"
        assert parse_qs(target.query)["return_to"] == [path]
