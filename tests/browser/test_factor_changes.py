"""A citizen in a real browser adds an authenticator app in a session left open: the
service asks for the password again first, then mails a notice of the change.

The confirmation page is checked with axe-core, in German and English.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest

from idp.accounts.registration import create_account
from idp.db.engine import Database
from tests.browser.conftest import arrive
from tests.browser.test_guest_account_journey import _look

pytestmark = pytest.mark.browser

EMAIL = "jonas.becker@example.de"
PASSWORD = "Laternen am Domplatz leuchten"


def test_adding_an_app_in_a_session_left_open_asks_for_the_password_and_mails_a_notice(
    page, server, mailbox, clock
):
    db = Database(server.settings.database_url, clock=clock)
    try:
        with db.unit_of_work() as session:
            create_account(session, server.settings, email=EMAIL, password=PASSWORD, verified=True)
    finally:
        db.dispose()

    base = server.url
    page.goto(f"{base}/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    arrive(page, "**/account")

    clock.advance(timedelta(minutes=server.settings.reauth_minutes + 1))
    page.goto(f"{base}/account/security")
    page.click("text=Authenticator-App einrichten")
    arrive(page, "**/account/confirm?*")
    assert page.locator("h1").inner_text() == "Bitte bestätigen Sie, dass Sie es sind"
    _look(page, "20-confirm")

    page.fill("#password", "nicht mein Passwort")
    page.click("button[type=submit]")
    assert page.locator(".error-summary").is_visible()
    _look(page, "21-confirm-error")

    page.click("text=English")
    assert page.locator("h1").inner_text() == "Please confirm it is you"
    _look(page, "22-confirm-en")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    arrive(page, "**/account/security/totp")

    key = re.sub(r"\s", "", page.locator("#totp-key code").inner_text())
    page.fill("#code", pyotp.TOTP(key).at(clock.now()))
    page.click("form[action='/account/security/totp'] button[type=submit]")
    arrive(page, "**/account/security?done=totp")

    [notice] = mailbox.wait_for(EMAIL)
    assert notice["Subject"] == "Änderung an der Anmeldung Ihres Servicekontos"
    assert f"{base}/account/security" in notice.get_content()
