"""Step-up in the authorization flow, end to end: a real server and an independent client.

The relying party is authlib's OAuth2Client (discovery, PKCE S256, state,
nonce; the ID token checked against the JWKS); the citizen's browser is
scripted over plain HTTP: it logs in on the real login page, answers the
step-up page with a TOTP code computed here (pyotp), or cancels it.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pyotp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from idp import assurance
from idp.clock import FrozenClock
from tests.assurance import factories
from tests.conftest import free_port, make_settings
from tests.oidc import factories as oidc_factories
from tests.oidc.test_code_flow import discover, verify_id_token

HIGH = assurance.HIGH
LOW = assurance.LOW
HIGH_MAX_AGE_MINUTES = 2


@pytest.fixture
def live_settings(db, keys_dir):
    """The live server's settings: `high` stays fresh for two minutes."""
    port = free_port()
    return make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        acr_high_max_age_minutes=HIGH_MAX_AGE_MINUTES,
    )


class RelyingParty:
    """A registered portal app, as authlib's client sees the server."""

    def __init__(self, live_server, db) -> None:
        self.clock = db.clock  # the server's: tests move it, the ID tokens' times follow it
        self.info = oidc_factories.client(db)
        self.metadata = discover(live_server.url)
        self.oauth = OAuth2Client(
            self.info.client_id,
            self.info.client_secret,
            scope="openid email",
            redirect_uri=self.info.redirect_uri,
            code_challenge_method="S256",
        )
        self.verifier = self.nonce = self.state = ""

    def authorization_url(self, **params: str) -> str:
        """A fresh authorization request (new verifier, nonce and state)."""
        self.verifier, self.nonce = generate_token(48), generate_token(20)
        url, self.state = self.oauth.create_authorization_url(
            self.metadata["authorization_endpoint"],
            code_verifier=self.verifier,
            nonce=self.nonce,
            **params,
        )
        return url

    def callback(self, response: httpx.Response) -> dict[str, str]:
        """The redirect back to the app, checked for the request's state and the issuer."""
        params = oidc_factories.callback_params(response)
        assert params["state"] == self.state
        assert params["iss"] == self.metadata["issuer"]
        return params

    def redeem(self, response: httpx.Response) -> tuple[dict, dict]:
        """Redeem the callback's code: (ID token claims, validated), token response."""
        self.callback(response)
        token = self.oauth.fetch_token(
            self.metadata["token_endpoint"],
            authorization_response=response.headers["location"],
            code_verifier=self.verifier,
        )
        claims = verify_id_token(
            self.metadata, token["id_token"], self.info.client_id, self.nonce, self.clock
        )
        return claims, token

    def userinfo(self) -> dict:
        return self.oauth.get(self.metadata["userinfo_endpoint"]).json()


@pytest.fixture
def rp(live_server, db):
    party = RelyingParty(live_server, db)
    yield party
    party.oauth.close()


def step_up_form(page: httpx.Response, method: str) -> dict[str, str]:
    """The hidden fields of the step-up page's form for ``method``."""
    assert urlsplit(str(page.url)).path == "/step-up", page.url
    for form in page.text.split("<form")[1:]:
        form = form.split("</form>")[0]
        if f'name="method" value="{method}"' in form:
            return oidc_factories.form_fields(form)
    raise AssertionError(f"the step-up page offers no {method}")


def cancel_link(page: httpx.Response) -> str:
    match = re.search(r'href="([^"]*step_up=cancelled[^"]*)"', page.text)
    assert match, "the step-up page has a way back"
    return html.unescape(match.group(1))


def answer_with_totp(
    browser: oidc_factories.Browser, page: httpx.Response, secret: str, clock: FrozenClock
) -> httpx.Response:
    """The citizen types the app's current code; the browser follows on to the app."""
    fields = {**step_up_form(page, "totp"), "code": pyotp.TOTP(secret).at(clock.now())}
    answered = browser.http.post("/step-up", data=fields)
    assert answered.status_code == 303, answered.text[:500]
    return browser.open(urljoin(browser.base_url, answered.headers["location"]))


def test_an_rp_asking_for_high_gets_a_step_up_and_then_high_for_the_same_sub(
    live_server, db, rp, clock
):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    assert HIGH in rp.metadata["acr_values_supported"]
    assert {"acr", "amr"} <= set(rp.metadata["claims_supported"])
    browser = oidc_factories.Browser(live_server.url)
    first, _ = rp.redeem(
        browser.open(rp.authorization_url(), credentials=(person.email, person.password))
    )
    assert (first["acr"], first["amr"]) == (LOW, ["pwd"])

    page = browser.open(rp.authorization_url(acr_values=HIGH))
    assert page.status_code == 200
    assert 'name="code"' in page.text, "the page asks for the authenticator app's code"
    claims, _ = rp.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    assert claims["acr"] == HIGH
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sub"] == first["sub"]
    assert claims["auth_time"] == first["auth_time"], "the step-up kept the login session"
    userinfo = rp.userinfo()
    assert (userinfo["acr"], userinfo["amr"]) == (HIGH, ["pwd", "otp", "mfa"])
    assert userinfo["auth_time"] == claims["auth_time"]


def test_an_essential_acr_the_citizen_declines_is_unmet_for_the_rp(live_server, db, rp):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    essential = {"id_token": {"acr": {"essential": True, "values": [HIGH]}}}
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        rp.authorization_url(claims=json.dumps(essential)),
        credentials=(person.email, person.password),
    )
    step_up_form(page, "totp")
    params = rp.callback(browser.open(urljoin(live_server.url, cancel_link(page))))
    assert params["error"] == "unmet_authentication_requirements"
    assert "cancelled" in params["error_description"]
    assert HIGH in params["error_description"]
    assert "code" not in params


def test_an_essential_acr_this_service_does_not_know_is_unmet_without_asking(live_server, db, rp):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    essential = {"id_token": {"acr": {"essential": True, "values": ["urn:example:loa:gold"]}}}
    browser = oidc_factories.Browser(live_server.url)
    response = browser.open(
        rp.authorization_url(claims=json.dumps(essential)),
        credentials=(person.email, person.password),
    )
    params = rp.callback(response)
    assert params["error"] == "unmet_authentication_requirements"
    assert "acr_values_supported" in params["error_description"]
    assert "/step-up" not in [urlsplit(p).path for p in browser.pages]


def test_prompt_none_below_the_requested_level_is_unmet(live_server, db, rp):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    rp.redeem(browser.open(rp.authorization_url(), credentials=(person.email, person.password)))
    params = rp.callback(browser.http.get(rp.authorization_url(acr_values=HIGH, prompt="none")))
    assert params["error"] == "unmet_authentication_requirements"
    assert "second factor" in params["error_description"]


def test_a_voluntary_high_for_an_unproofed_account_ends_in_low(live_server, db, rp):
    person = factories.citizen(db, live_server.settings, proofed=False, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        rp.authorization_url(acr_values=HIGH), credentials=(person.email, person.password)
    )
    assert urlsplit(str(page.url)).path == "/step-up"
    assert 'value="totp"' not in page.text, "a factor of an unproofed account never gives high"
    assert "Bürgerbüro" in page.text, "the page shows the way to identification in person"
    claims, _ = rp.redeem(browser.open(urljoin(live_server.url, cancel_link(page))))
    assert (claims["acr"], claims["amr"]) == (LOW, ["pwd"])


def test_a_stork_alias_is_stepped_up_to_and_answered_in_its_own_terms(live_server, db, rp, clock):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    assert "STORK-QAA-Level-4" in rp.metadata["acr_values_supported"]
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        rp.authorization_url(acr_values="STORK-QAA-Level-4"),
        credentials=(person.email, person.password),
    )
    assert parse_qs(urlsplit(str(page.url)).query)["acr"] == [HIGH]
    claims, _ = rp.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    assert claims["acr"] == "STORK-QAA-Level-4"


def test_prompt_login_asks_for_the_password_and_the_second_factor_again(live_server, db, rp, clock):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    credentials = (person.email, person.password)
    page = browser.open(rp.authorization_url(acr_values=HIGH), credentials=credentials)
    first, _ = rp.redeem(answer_with_totp(browser, page, person.totp_secret, clock))

    clock.advance(timedelta(seconds=1))  # the app asks again a moment later
    browser.pages.clear()
    page = browser.open(
        rp.authorization_url(acr_values=HIGH, prompt="login"), credentials=credentials
    )
    assert "/login" in [urlsplit(p).path for p in browser.pages]
    assert urlsplit(str(page.url)).path == "/step-up", "a new login starts from low again"
    # The code of the next time step: the current one was used a moment ago.
    fields = {
        **step_up_form(page, "totp"),
        "code": pyotp.TOTP(person.totp_secret).at(clock.now() + timedelta(seconds=30)),
    }
    answered = browser.http.post("/step-up", data=fields)
    assert answered.status_code == 303, answered.text[:500]
    claims, _ = rp.redeem(browser.open(urljoin(live_server.url, answered.headers["location"])))
    assert claims["acr"] == HIGH
    assert claims["sub"] == first["sub"]
    assert claims["auth_time"] >= first["auth_time"]
    assert claims["sid"] != first["sid"], "logging in again opened a new session"


def test_max_age_sends_a_high_session_back_to_the_login_page(live_server, db, rp, clock):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        rp.authorization_url(acr_values=HIGH), credentials=(person.email, person.password)
    )
    rp.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    clock.advance(timedelta(seconds=5))
    response = browser.http.get(rp.authorization_url(acr_values=HIGH, max_age="2"))
    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/login"


def test_a_high_level_older_than_its_maximum_age_asks_for_the_second_factor_again(
    live_server, db, rp, clock
):
    person = factories.citizen(db, live_server.settings, proofed=True, with_totp=True)
    browser = oidc_factories.Browser(live_server.url)
    page = browser.open(
        rp.authorization_url(acr_values=HIGH), credentials=(person.email, person.password)
    )
    rp.redeem(answer_with_totp(browser, page, person.totp_secret, clock))
    assert browser.http.get(rp.authorization_url(acr_values=HIGH)).status_code == 302, (
        "fresh: straight back to the app"
    )
    clock.advance(timedelta(minutes=HIGH_MAX_AGE_MINUTES + 1))
    response = browser.http.get(rp.authorization_url(acr_values=HIGH))
    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/step-up"
