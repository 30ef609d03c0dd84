"""A citizen in Chromium signs in to the demo portal app: login, consent, back, logout.

The same journey as the plain-HTTP test, in a real browser: the demo portal
app (authlib's client, PKCE, state, nonce, ID token checked against the JWKS)
sends the browser to /authorize; the citizen logs in and allows the data on
the consent page, and lands back in the app signed in. Every IdP page on the
way is checked with axe-core.
"""

from __future__ import annotations

import pytest

from idp.oidc.demo import EMAIL, PASSWORD, ensure_demo
from tests.browser.conftest import arrive, check_accessibility

pytestmark = pytest.mark.browser


def test_sign_in_to_a_portal_app_with_consent_and_log_out(page, server, db):
    with db.unit_of_work() as session:
        ensure_demo(session, server.settings)
    base = server.url
    page.goto(f"{base}/demo")
    check_accessibility(page)
    page.click("a[href='/demo/login']")

    arrive(page, "**/login?*")
    check_accessibility(page)
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")

    arrive(page, "**/consent?flow=*")
    check_accessibility(page)
    assert "Demo-Portal" in page.content()
    page.click("button[value=allow]")

    arrive(page, f"{base}/demo")
    content = page.content()
    assert EMAIL in content and "at_hash" in content and "nonce" in content

    page.click("a[href='/demo/logout']")
    arrive(page, f"{base}/demo")
    assert "/demo/login" in page.content()
    page.goto(f"{base}/account")
    assert "/login" in page.url, "the single sign-on session ended too"
