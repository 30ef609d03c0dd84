"""Each misuse answered as the specs say: the right error code, no redirect where forbidden."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest

from tests.oidc import factories


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def world(live_server, db):
    """A server, a confidential client and a logged-in browser."""
    info = factories.client(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, factories.account(db), live_server.settings))
    return live_server, info, browser


def authorize_url(server, info, **extra) -> str:
    params = {
        "response_type": "code",
        "client_id": info.client_id,
        "redirect_uri": info.redirect_uri,
        "scope": "openid profile",
        "state": "st",
        "nonce": "n",
    }
    params.update(extra)
    return f"{server.url}/authorize?{urlencode({k: v for k, v in params.items() if v is not None})}"


def get_code(world, **extra) -> str:
    server, info, browser = world
    return factories.callback_params(browser.open(authorize_url(server, info, **extra)))["code"]


def redeem(server, info, code, *, auth=None, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": info.redirect_uri}
    data.update(extra)
    return httpx.post(
        f"{server.url}/token",
        data={k: v for k, v in data.items() if v is not None},
        auth=auth or (info.client_id, info.client_secret),
    )


def test_an_unregistered_redirect_uri_is_an_error_page_not_a_redirect(world):
    server, info, browser = world
    response = browser.http.get(authorize_url(server, info, redirect_uri="https://evil.example/cb"))
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
    assert "invalid_request" in response.text
    assert "location" not in response.headers


def test_an_unknown_client_is_an_error_page_not_a_redirect(world):
    server, info, browser = world
    response = browser.http.get(authorize_url(server, info, client_id="nobody"))
    assert response.status_code == 400
    assert "invalid_client" in response.text
    assert "location" not in response.headers


def test_an_unsupported_response_type_is_redirected_with_its_error_and_iss(world):
    server, info, browser = world
    response = browser.http.get(authorize_url(server, info, response_type="token"))
    params = factories.callback_params(response)
    assert params["error"] == "unsupported_response_type"
    assert params["state"] == "st"
    assert params["iss"] == server.url


def test_prompt_none_without_a_session_answers_login_required(live_server, db):
    info = factories.client(db)
    browser = factories.Browser(live_server.url)
    params = factories.callback_params(
        browser.http.get(authorize_url(live_server, info, prompt="none"))
    )
    assert params["error"] == "login_required"
    assert params["state"] == "st"


def test_a_public_client_without_pkce_is_refused(live_server, db):
    info = factories.client(db, token_endpoint_auth_method="none")
    browser = factories.Browser(live_server.url)
    params = factories.callback_params(browser.http.get(authorize_url(live_server, info)))
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]


def test_a_plain_pkce_challenge_is_refused(world):
    server, info, browser = world
    url = authorize_url(server, info, code_challenge="a" * 43, code_challenge_method="plain")
    params = factories.callback_params(browser.http.get(url))
    assert params["error"] == "invalid_request"


def test_a_missing_code_verifier_is_refused(world):
    server, info, _ = world
    verifier = secrets.token_urlsafe(48)
    code = get_code(world, code_challenge=challenge(verifier), code_challenge_method="S256")
    response = redeem(server, info, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_wrong_code_verifier_is_refused(world):
    server, info, _ = world
    verifier = secrets.token_urlsafe(48)
    code = get_code(world, code_challenge=challenge(verifier), code_challenge_method="S256")
    response = redeem(server, info, code, code_verifier=secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_replayed_code_is_refused_and_revokes_the_tokens_it_issued(world):
    server, info, _ = world
    code = get_code(world, scope="openid offline_access")
    first = redeem(server, info, code)
    assert first.status_code == 200
    tokens = first.json()
    replay = redeem(server, info, code)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    userinfo = httpx.get(
        f"{server.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    refresh = httpx.post(
        f"{server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(info.client_id, info.client_secret),
    )
    assert refresh.json()["error"] == "invalid_grant"


def test_the_code_of_another_client_is_refused(world, db):
    server, info, _ = world
    other = factories.client(db, name="Other")
    code = get_code(world)
    response = redeem(server, info, code, auth=(other.client_id, other.client_secret))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert redeem(server, info, code).status_code == 200, "the rightful client still can"


def test_an_expired_code_is_refused(world, clock):
    server, info, _ = world
    code = get_code(world)
    clock.advance(timedelta(seconds=server.settings.authorization_code_seconds + 1))
    response = redeem(server, info, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_reused_refresh_token_revokes_its_whole_family(world, clock):
    server, info, _ = world
    tokens = redeem(server, info, get_code(world, scope="openid offline_access")).json()

    def refresh(token):
        return httpx.post(
            f"{server.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(info.client_id, info.client_secret),
        )

    rotated = refresh(tokens["refresh_token"])
    assert rotated.status_code == 200
    clock.advance(timedelta(seconds=server.settings.refresh_reuse_grace_seconds + 1))
    reuse = refresh(tokens["refresh_token"])
    assert reuse.json()["error"] == "invalid_grant"
    assert refresh(rotated.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_refused_with_401(world):
    server, info, _ = world
    code = get_code(world)
    response = redeem(server, info, code, auth=(info.client_id, "wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "www-authenticate" in response.headers


def test_no_refresh_token_without_offline_access(world):
    server, info, _ = world
    tokens = redeem(server, info, get_code(world, scope="openid")).json()
    assert "refresh_token" not in tokens
    assert "id_token" in tokens
