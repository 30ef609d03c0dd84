"""Verified identity goes only to logins at IDP_IDENTITY_MINIMUM_ACR or above, over HTTP.

A real server and authlib's OAuth2Client as the portal app; the citizen is
identified in person and logs in on the real pages, with the password alone
or with the authenticator app on the step-up page.
"""

from __future__ import annotations

import json

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from idp import assurance
from idp.db.models import Account
from idp.settings import Settings, SettingsError
from tests.assurance import factories
from tests.assurance.test_step_up_flow import RelyingParty, answer_with_totp
from tests.oidc import factories as oidc_factories

HIGH, LOW, SUBSTANTIAL = assurance.HIGH, assurance.LOW, assurance.SUBSTANTIAL
ASK_FOR_IDENTITY = {
    "id_token": {
        "verified_claims": {
            "verification": {"trust_framework": None},
            "claims": {"given_name": None, "birthdate": None},
        },
        "birthdate": None,
    }
}


class IdentityApp(RelyingParty):
    """A portal app allowed the scope ``identity``."""

    def __init__(self, live_server, db) -> None:
        super().__init__(live_server, db)
        self.info = oidc_factories.client(
            db, name="Wohngeld", scopes=["openid", "profile", "identity", "offline_access"]
        )
        self.oauth.close()
        self.oauth = OAuth2Client(
            self.info.client_id,
            self.info.client_secret,
            scope="openid profile identity",
            redirect_uri=self.info.redirect_uri,
            code_challenge_method="S256",
        )

    def introspect(self, token: str) -> dict:
        return httpx.post(
            self.metadata["introspection_endpoint"],
            data={"token": token},
            auth=(self.info.client_id, self.info.client_secret),
        ).json()


@pytest.fixture
def app(live_server, db):
    party = IdentityApp(live_server, db)
    yield party
    party.oauth.close()


def _identified(live_server, db):
    return factories.citizen(db, live_server.settings, proofed=True, with_totp=True)


def test_a_password_only_login_of_an_identified_citizen_gets_no_verified_identity(
    live_server, db, app
):
    # Userinfo released verified_claims (level high) while the ID token said acr low.
    person = _identified(live_server, db)
    browser = oidc_factories.Browser(live_server.url)
    response = browser.open(
        app.authorization_url(claims=json.dumps(ASK_FOR_IDENTITY)),
        credentials=(person.email, person.password),
    )
    claims, token = app.redeem(response)
    assert claims["acr"] == LOW
    assert "verified_claims" not in claims and "birthdate" not in claims
    userinfo = app.userinfo()
    assert userinfo["acr"] == LOW
    assert "verified_claims" not in userinfo
    assert not {"birthdate", "address", "place_of_birth", "nationalities"} & set(userinfo)
    assert "verified_claims" not in app.introspect(token["access_token"])


def test_after_a_step_up_to_high_the_same_app_gets_the_verified_identity(
    live_server, db, app, clock
):
    person = _identified(live_server, db)
    browser = oidc_factories.Browser(live_server.url)
    app.redeem(browser.open(app.authorization_url(), credentials=(person.email, person.password)))
    page = browser.open(app.authorization_url(acr_values=HIGH, claims=json.dumps(ASK_FOR_IDENTITY)))
    claims, _ = app.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    assert claims["acr"] == HIGH
    assert claims["birthdate"] == "1964-08-12"
    assert claims["verified_claims"]["verification"]["trust_framework"] == "eidas"
    userinfo = app.userinfo()
    assert userinfo["verified_claims"]["claims"]["family_name"] == "Mustermann"
    assert userinfo["address"]["locality"] == "Köln"


def test_substantial_is_enough_by_default(live_server, db, app, clock):
    person = _identified(live_server, db)
    with db.unit_of_work() as session:
        session.get(Account, person.account_id).proofing_level = "substantial"
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        app.authorization_url(acr_values=SUBSTANTIAL), credentials=(person.email, person.password)
    )
    claims, _ = app.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    assert claims["acr"] == SUBSTANTIAL
    assert "verified_claims" in app.userinfo()


def test_the_minimum_is_a_setting_read_as_an_eidas_level():
    assert Settings().identity_minimum_acr == SUBSTANTIAL
    stork = Settings.from_env({"IDP_IDENTITY_MINIMUM_ACR": "STORK-QAA-Level-4"})
    assert stork.identity_minimum_acr == HIGH
    with pytest.raises(SettingsError, match="IDP_IDENTITY_MINIMUM_ACR: must be one of"):
        Settings.from_env({"IDP_IDENTITY_MINIMUM_ACR": "gold"})
