"""A citizen in a real browser: register, verify, log out, log in, reset the password.

Every page on the way is checked with axe-core for WCAG 2.1 AA violations.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.accounts.conftest import link
from tests.browser.conftest import arrive, check_accessibility

pytestmark = pytest.mark.browser

EMAIL = "lena.schmidt@example.de"
PASSWORD = "Sonnenblumen auf dem Marktplatz"
NEW_PASSWORD = "Regenschirm vor dem Bürgeramt"
SCREENSHOTS = os.environ.get("IDP_SCREENSHOTS")


def _look(page, name: str) -> None:
    check_accessibility(page)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SCREENSHOTS}/{name}.png", full_page=True)


def test_register_verify_logout_login_and_reset(page, server, mailbox):
    base = server.url
    page.goto(f"{base}/register")
    _look(page, "01-register")

    # A first try with a common password shows the error summary.
    page.fill("#email", EMAIL)
    page.fill("#password", "passwort")
    page.check("#privacy_consent")
    page.click("button[type=submit]")
    assert page.locator(".error-summary").is_visible()
    _look(page, "02-register-error")

    page.fill("#password", PASSWORD)
    page.check("#privacy_consent")
    page.click("button[type=submit]")
    arrive(page, "**/verify-email?flow=*")
    assert EMAIL in page.content()
    _look(page, "03-verify-email")

    [mail] = mailbox.wait_for(EMAIL)
    page.goto(base + link(mail, "/verify-email"))
    _look(page, "04-verify-confirm")
    page.click("button[type=submit]")
    page.wait_for_selector("text=E-Mail-Adresse bestätigt")
    _look(page, "05-verified")

    page.click("a.button")
    arrive(page, "**/account")
    assert EMAIL in page.content()
    _look(page, "06-account")

    page.click("text=Abmelden")
    page.wait_for_selector("h1:has-text('Sie sind abgemeldet')")
    _look(page, "07-logged-out")

    page.goto(f"{base}/login")
    _look(page, "08-login")
    page.fill("#email", EMAIL)
    page.fill("#password", "nicht mein Passwort")
    page.click("button[type=submit]")
    assert page.locator(".error-summary").is_visible()
    _look(page, "09-login-error")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    arrive(page, "**/account")

    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.click("text=Passwort vergessen?")
    _look(page, "10-forgot")
    page.fill("#email", EMAIL)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Bitte sehen Sie in Ihr Postfach")
    _look(page, "11-forgot-sent")

    _, reset_mail = mailbox.wait_for(EMAIL, count=2)
    page.goto(base + link(reset_mail, "/password/reset"))
    _look(page, "12-reset")
    page.fill("#password", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Passwort geändert")
    _look(page, "13-reset-done")

    page.click("a.button")
    page.fill("#password", NEW_PASSWORD)
    page.click("button[type=submit]")
    arrive(page, "**/account")
    assert EMAIL in page.content()


def test_the_pages_read_well_in_english(page, server):
    page.goto(f"{server.url}/register")
    page.click("text=English")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Create a service account"
    _look(page, "14-register-en")
    page.goto(f"{server.url}/login")
    assert page.locator("h1").inner_text() == "Log in"
    _look(page, "15-login-en")
