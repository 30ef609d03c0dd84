"""The acr of refreshed access tokens over HTTP: the login session's level now, or the
grant's aged by the policy's maximum ages, never `high` for the family's 30 days."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import delete

from idp import assurance
from idp.db.models import LoginSession
from tests.assurance import factories
from tests.assurance.test_identity_release import IdentityApp
from tests.assurance.test_step_up_flow import answer_with_totp
from tests.conftest import free_port, make_settings
from tests.oidc import factories as oidc_factories

HIGH, LOW, SUBSTANTIAL = assurance.HIGH, assurance.LOW, assurance.SUBSTANTIAL
HIGH_MINUTES, SUBSTANTIAL_MINUTES = 2, 10
SCOPE = "openid profile identity offline_access"


@pytest.fixture
def live_settings(db, keys_dir):
    """`high` counts for two minutes, `substantial` for ten."""
    port = free_port()
    return make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        acr_high_max_age_minutes=HIGH_MINUTES,
        acr_substantial_max_age_minutes=SUBSTANTIAL_MINUTES,
    )


@pytest.fixture
def app(live_server, db):
    party = IdentityApp(live_server, db)
    yield party
    party.oauth.close()


def _high_login(live_server, db, app):
    """A citizen logged in with password and authenticator app: (browser, token response)."""
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        app.authorization_url(acr_values=HIGH, scope=SCOPE),
        credentials=(person.email, person.password),
    )
    claims, tokens = app.redeem(answer_with_totp(browser, page, person.totp_secret, db.clock))
    assert claims["acr"] == HIGH and "refresh_token" in tokens
    return browser, tokens


class Refresher:
    """Refreshes the app's tokens and reads the new access token's acr."""

    def __init__(self, live_server, app, tokens) -> None:
        self.server, self.app, self.refresh_token = live_server, app, tokens["refresh_token"]
        self.access_token = tokens["access_token"]
        self.keys = KeySet.import_key_set(httpx.get(f"{live_server.url}/jwks.json").json())

    def acr(self) -> str | None:
        answer = httpx.post(
            f"{self.server.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
            auth=(self.app.info.client_id, self.app.info.client_secret),
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        self.refresh_token, self.access_token = body["refresh_token"], body["access_token"]
        return jwt.decode(self.access_token, self.keys).claims.get("acr")

    def userinfo(self) -> dict:
        bearer = {"Authorization": f"Bearer {self.access_token}"}
        return httpx.get(f"{self.server.url}/userinfo", headers=bearer).json()


def test_a_refresh_carries_the_acr_the_live_login_session_has_now(live_server, db, app, clock):
    # Refreshed access tokens kept `high` for the family's 30 days.
    browser, tokens = _high_login(live_server, db, app)
    refresher = Refresher(live_server, app, tokens)
    assert refresher.acr() == HIGH
    clock.advance(timedelta(minutes=HIGH_MINUTES + 1))
    assert browser.http.get("/account").status_code == 200, "the session is alive"
    assert refresher.acr() == SUBSTANTIAL
    assert "verified_claims" in refresher.userinfo(), "substantial is the default minimum"


def test_after_logout_the_grant_keeps_its_level_only_as_long_as_the_policy_allows(
    live_server, db, app, clock
):
    browser, tokens = _high_login(live_server, db, app)
    logout = browser.http.get("/end-session", params={"id_token_hint": tokens["id_token"]})
    assert logout.status_code == 200
    refresher = Refresher(live_server, app, tokens)
    assert refresher.acr() == HIGH, "offline access outlives the session, its level ages"
    clock.advance(timedelta(minutes=HIGH_MINUTES + 1))
    assert refresher.acr() == SUBSTANTIAL
    clock.advance(timedelta(minutes=SUBSTANTIAL_MINUTES))
    assert refresher.acr() == LOW
    assert "verified_claims" not in refresher.userinfo()


def test_without_the_session_row_the_level_ages_from_the_login(live_server, db, app, clock):
    _, tokens = _high_login(live_server, db, app)
    with db.unit_of_work() as session:
        session.execute(delete(LoginSession))
    refresher = Refresher(live_server, app, tokens)
    assert refresher.acr() == HIGH
    clock.advance(timedelta(minutes=HIGH_MINUTES + 1))
    assert refresher.acr() == SUBSTANTIAL
