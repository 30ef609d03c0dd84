"""The interaction policy over HTTP: consent remembered and withdrawn, step-up, prompts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import assurance
from idp.oidc.interaction import POLICY
from tests.oidc import factories
from tests.oidc.test_negative import authorize_url, redeem


def signed_in(live_server, db, **account):
    account_id = factories.account(db, **account)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    return browser, account_id


def id_claims(live_server, token):
    keys = KeySet.import_key_set(httpx.get(f"{live_server.url}/jwks.json").json())
    return jwt.decode(token, keys).claims


def test_the_policy_reads_as_data():
    assert [p.name for p in POLICY] == ["login", "step_up", "consent"]
    assert [c.reason for c in POLICY[0].checks] == [
        "prompt_create",
        "no_session",
        "prompt_login",
        "max_age",
        "id_token_hint",
    ]


def test_consent_is_asked_once_per_scope_set_and_again_for_more(live_server, db):
    info = factories.client(db)
    browser, _ = signed_in(live_server, db)
    browser.open(authorize_url(live_server, info, scope="openid email"))
    assert any("/consent" in p for p in browser.pages)

    browser.pages.clear()
    again = browser.open(authorize_url(live_server, info, scope="openid email"), consent=None)
    assert "code" in factories.callback_params(again)
    assert not any("/consent" in p for p in browser.pages)

    more = browser.open(
        authorize_url(live_server, info, scope="openid email profile"), consent=None
    )
    assert urlsplit(str(more.url)).path == "/consent", "new data needs a new decision"
    assert "Ihren Namen" in more.text


def test_a_first_party_client_skips_consent(live_server, db):
    info = factories.client(db, first_party=True)
    browser, _ = signed_in(live_server, db)
    response = browser.open(authorize_url(live_server, info), consent=None)
    assert "code" in factories.callback_params(response)


def test_denying_consent_tells_the_client_access_denied(live_server, db):
    info = factories.client(db)
    browser, _ = signed_in(live_server, db)
    params = factories.callback_params(
        browser.open(authorize_url(live_server, info), consent="deny")
    )
    assert params["error"] == "access_denied" and params["state"] == "st"
    assert params["iss"] == live_server.url


def test_prompt_none_without_consent_answers_consent_required(live_server, db):
    info = factories.client(db)
    browser, _ = signed_in(live_server, db)
    params = factories.callback_params(
        browser.http.get(authorize_url(live_server, info, prompt="none"))
    )
    assert params["error"] == "consent_required"


def test_withdrawing_consent_stops_the_apps_tokens(live_server, db):
    info = factories.client(db)
    browser, _ = signed_in(live_server, db)
    code = factories.callback_params(
        browser.open(authorize_url(live_server, info, scope="openid offline_access"))
    )["code"]
    tokens = redeem(live_server, info, code).json()
    apps = browser.http.get("/account/apps")
    assert apps.status_code == 200 and "Wohngeld" in apps.text
    fields = factories.form_fields(apps.text)
    assert fields["client_id"] == info.client_id
    done = browser.http.post("/account/apps/withdraw", data=fields)
    assert done.status_code == 303
    userinfo = httpx.get(
        f"{live_server.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    refreshed = httpx.post(
        f"{live_server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(info.client_id, info.client_secret),
    )
    assert refreshed.json()["error"] == "invalid_grant"
    page = browser.open(authorize_url(live_server, info), consent=None)
    assert urlsplit(str(page.url)).path == "/consent"


def test_pairwise_subjects_differ_per_sector_and_stay_stable(live_server, db):
    one = factories.client(db, subject_type="pairwise", first_party=True)
    other = factories.client(
        db,
        subject_type="pairwise",
        first_party=True,
        redirect_uris=["https://other-sector.example.de/cb"],
    )
    browser, _ = signed_in(live_server, db)

    def sub(info):
        code = factories.callback_params(browser.open(authorize_url(live_server, info)))["code"]
        return id_claims(live_server, redeem(live_server, info, code).json()["id_token"])["sub"]

    assert sub(one) == sub(one)
    assert sub(one) != sub(other)


def test_a_request_for_high_sends_a_low_session_to_step_up(live_server, db):
    info = factories.client(db, first_party=True)
    browser, _ = signed_in(live_server, db)
    response = browser.http.get(authorize_url(live_server, info, acr_values=assurance.HIGH))
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    query = parse_qs(target.query)
    assert target.path == "/step-up"
    assert query["acr"] == [assurance.HIGH]
    assert query["return_to"][0].startswith("/authorize/resume/")


def test_cancelled_step_up_for_an_essential_acr_is_unmet(live_server, db):
    info = factories.client(db, first_party=True, minimum_acr=assurance.HIGH)
    browser, _ = signed_in(live_server, db)
    response = browser.http.get(authorize_url(live_server, info))
    resume = parse_qs(urlsplit(response.headers["location"]).query)["return_to"][0]
    cancelled = browser.http.get(resume + "?step_up=cancelled")
    params = factories.callback_params(cancelled)
    assert params["error"] == "unmet_authentication_requirements"


def test_a_voluntary_acr_that_needs_a_step_up_with_prompt_none_is_unmet(live_server, db):
    info = factories.client(db, first_party=True)
    browser, _ = signed_in(live_server, db)
    response = browser.http.get(
        authorize_url(live_server, info, acr_values=assurance.HIGH, prompt="none")
    )
    params = factories.callback_params(response)
    assert params["error"] == "unmet_authentication_requirements"
    assert assurance.HIGH in params["error_description"]
    assert (params["state"], params["iss"]) == ("st", live_server.settings.issuer)


def test_a_cancelled_step_up_for_a_voluntary_acr_goes_on_with_the_sessions_level(live_server, db):
    info = factories.client(db, first_party=True)
    browser, _ = signed_in(live_server, db)
    response = browser.http.get(authorize_url(live_server, info, acr_values=assurance.HIGH))
    resume = parse_qs(urlsplit(response.headers["location"]).query)["return_to"][0]
    code = factories.callback_params(browser.http.get(resume + "?step_up=cancelled"))["code"]
    claims = id_claims(live_server, redeem(live_server, info, code).json()["id_token"])
    assert claims["acr"] == assurance.LOW
    assert claims["amr"] == ["pwd"]


def test_prompt_create_sends_the_browser_to_registration(live_server, db):
    info = factories.client(db)
    response = httpx.get(authorize_url(live_server, info, prompt="create"))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/register?")


def test_an_id_token_hint_for_someone_else_with_prompt_none_is_login_required(
    live_server, db, clock
):
    info = factories.client(db, first_party=True)
    first, _ = signed_in(live_server, db)
    code = factories.callback_params(first.open(authorize_url(live_server, info)))["code"]
    hint = redeem(live_server, info, code).json()["id_token"]
    second, _ = signed_in(live_server, db)
    clock.advance(timedelta(seconds=1))  # the app asks after that login, not during it
    params = factories.callback_params(
        second.http.get(authorize_url(live_server, info, prompt="none", id_token_hint=hint))
    )
    assert params["error"] == "login_required"


def test_discovery_advertises_what_is_built(client):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["request_parameter_supported"] is False
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    assert metadata["backchannel_logout_supported"] is True
    assert "implicit" not in metadata["grant_types_supported"]


def test_a_first_party_apps_grant_is_listed_and_withdrawing_it_revokes_it(live_server, db):
    # First-party apps ask no consent, so their grants appeared nowhere in /account/apps.
    info = factories.client(db, name="Stadtbibliothek", first_party=True)
    browser, _ = signed_in(live_server, db)
    code = factories.callback_params(
        browser.open(authorize_url(live_server, info, scope="openid offline_access"), consent=None)
    )["code"]
    tokens = redeem(live_server, info, code).json()
    apps = browser.http.get("/account/apps")
    assert apps.status_code == 200 and "Stadtbibliothek" in apps.text
    fields = factories.form_fields(apps.text)
    assert fields["client_id"] == info.client_id
    assert browser.http.post("/account/apps/withdraw", data=fields).status_code == 303
    refreshed = httpx.post(
        f"{live_server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(info.client_id, info.client_secret),
    )
    assert refreshed.json()["error"] == "invalid_grant"
    assert "Stadtbibliothek" not in browser.http.get("/account/apps").text


def test_an_apps_grant_without_offline_access_is_listed_while_its_session_lives(
    live_server, db, clock
):
    info = factories.client(db, name="Stadtbibliothek", first_party=True)
    browser, account_id = signed_in(live_server, db)
    code = factories.callback_params(
        browser.open(authorize_url(live_server, info, scope="openid"), consent=None)
    )["code"]
    redeem(live_server, info, code)
    assert "Stadtbibliothek" in browser.http.get("/account/apps").text
    # The session idles out (nothing is announced, the grant stays unrevoked): the app
    # holds nothing any more.
    clock.advance(timedelta(minutes=live_server.settings.session_idle_minutes + 1))
    later = factories.Browser(live_server.url)
    later.log_in(factories.login_token(db, account_id, live_server.settings))
    assert "Stadtbibliothek" not in later.http.get("/account/apps").text
