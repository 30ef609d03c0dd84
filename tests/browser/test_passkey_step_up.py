"""Passkeys in Chromium with its virtual authenticator: enrolment, then step-up to high.

The DevTools protocol gives the browser a virtual platform authenticator
(CTAP2, internal transport, resident keys, user verification). The citizen
adds a passkey under /account/security; once identified (which binds it), a
portal app asks for eIDAS high and the citizen confirms with the passkey on
the step-up page. WebAuthn needs a secure context and a domain as relying
party id, so the issuer here is http://localhost (an IP address is no RP id).
Every page on the way is checked with axe-core.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp import assurance
from idp.accounts import proofing
from idp.db.models import Account, SecondFactor
from tests.accounts.conftest import FAST_HASH
from tests.assurance import factories
from tests.browser.conftest import arrive, check_accessibility
from tests.conftest import LiveServer, free_port, make_settings
from tests.oidc import factories as oidc_factories
from tests.oidc.test_negative import authorize_url

pytestmark = pytest.mark.browser

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@pytest.fixture
def localhost_server(db, keys_dir) -> Iterator[LiveServer]:
    port = free_port()
    settings = make_settings(
        db.url, keys_dir, issuer=f"http://localhost:{port}", port=port, **FAST_HASH
    )
    with LiveServer(settings, db.clock) as live:
        yield live


def test_a_passkey_is_enrolled_and_then_steps_a_login_up_to_high(page, localhost_server, db):
    server = localhost_server
    base = server.url
    person = factories.citizen(db, server.settings, proofed=False, with_totp=False)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    authenticator_id = authenticator["authenticatorId"]

    page.goto(f"{base}/login?return_to=/account")
    page.fill("#email", person.email)
    page.fill("#password", person.password)
    page.click("button[type=submit]")
    arrive(page, f"{base}/account")
    check_accessibility(page)
    page.click("a[href='/account/security']")
    arrive(page, f"{base}/account/security")
    check_accessibility(page)

    page.click("a[href='/account/security/passkey']")
    arrive(page, f"{base}/account/security/passkey")
    check_accessibility(page)
    page.fill("#label", "Laptop")
    page.click("form[data-webauthn] button[type=submit]")
    arrive(page, f"{base}/account/security?done=passkey")
    check_accessibility(page)
    assert "Laptop" in page.content()
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(credentials["credentials"]) == 1
    with db.unit_of_work() as session:
        key = session.scalars(
            select(SecondFactor).where(SecondFactor.account_id == person.account_id)
        ).one()
        assert (key.kind, key.binding, key.amr) == ("passkey", "low_session", "swk")
        # Identified in person, confirming the passkey at the counter: proofing binds it.
        proofing.record_proofing(
            session,
            session.get(Account, person.account_id),
            factories.verified_identity(session),
            proven_factors=[key.id],
        )

    info = oidc_factories.client(db)
    callbacks: list[str] = []

    def portal_app(route) -> None:
        callbacks.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="back at the portal app")

    page.route("https://rp.example.de/**", portal_app)
    page.goto(authorize_url(server, info, acr_values=assurance.HIGH, scope="openid email"))
    arrive(page, f"{base}/step-up?*")
    check_accessibility(page)
    assert page.locator("input[name=method][value=totp]").count() == 0
    page.click("form[data-webauthn=get] button[type=submit]")
    arrive(page, f"{base}/consent?*")
    check_accessibility(page)
    page.click("button[value=allow]")
    arrive(page, "https://rp.example.de/**")

    code = parse_qs(urlsplit(callbacks[-1]).query)["code"][0]
    tokens = httpx.post(
        f"{base}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": info.redirect_uri},
        auth=(info.client_id, info.client_secret),
    ).json()
    keys = KeySet.import_key_set(httpx.get(f"{base}/jwks.json").json())
    claims = jwt.decode(tokens["id_token"], keys).claims
    assert claims["acr"] == assurance.HIGH
    assert claims["amr"] == ["pwd", "swk", "mfa"]
    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    with db.unit_of_work() as session:
        key = session.scalars(
            select(SecondFactor).where(SecondFactor.account_id == person.account_id)
        ).one()
        assert key.binding == "proofing"
        assert key.sign_count == used["credentials"][0]["signCount"] > 0
