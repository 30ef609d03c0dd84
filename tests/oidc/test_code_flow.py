"""The authorization code flow end to end: authlib's OAuth2Client against a real server.

The relying party is authlib's client (discovery, PKCE S256, state, nonce); the
citizen's browser is scripted over plain HTTP and answers the consent page.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.clock import Clock
from tests.oidc import factories


def discover(server_url: str) -> dict:
    return httpx.get(f"{server_url}/.well-known/openid-configuration").json()


def verify_id_token(
    metadata: dict, id_token: str, client_id: str, nonce: str | None, clock: Clock | None = None
) -> dict:
    """Validate an ID token as a relying party must (OIDC Core 3.1.3.7), at the time of
    ``clock`` (the server's, when a test moves it; the machine's by default)."""
    keys = KeySet.import_key_set(httpx.get(metadata["jwks_uri"]).json())
    token = jwt.decode(id_token, keys, algorithms=metadata["id_token_signing_alg_values_supported"])
    assert token.header["alg"] != "none"
    assert "kid" in token.header
    registry = jwt.JWTClaimsRegistry(
        now=(lambda: int(clock.now().timestamp())) if clock else None,
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": nonce is not None, "value": nonce} if nonce else {"essential": False},
    )
    registry.validate(token.claims)
    return token.claims


@pytest.fixture
def rp(live_server, db):
    """A confidential relying party registered with the server, as authlib's client."""
    info = factories.client(db)
    metadata = discover(live_server.url)
    oauth = OAuth2Client(
        info.client_id,
        info.client_secret,
        scope="openid profile email offline_access",
        redirect_uri=info.redirect_uri,
        code_challenge_method="S256",
    )
    yield info, metadata, oauth
    oauth.close()


def sign_in(live_server, db, settings_account=None):
    account_id = settings_account or factories.account(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    return browser, account_id


def test_an_independent_client_completes_the_flow_and_uses_every_token(live_server, db, rp):
    info, metadata, oauth = rp
    credentials = factories.password_account(db, live_server.settings)
    browser = factories.Browser(live_server.url)
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    callback = browser.open(url, credentials=credentials)
    paths = [urlsplit(page).path for page in browser.pages]
    assert paths[:2] == ["/authorize", "/login"]
    resumed = next(i for i, p in enumerate(paths) if p.startswith("/authorize/resume/"))
    assert paths.index("/consent") > resumed
    params = factories.callback_params(callback)
    assert params["state"] == state
    assert params["iss"] == metadata["issuer"]
    token = oauth.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback.headers["location"],
        code_verifier=verifier,
    )
    claims = verify_id_token(metadata, token["id_token"], info.client_id, nonce, db.clock)
    for name in ("auth_time", "sid", "at_hash", "amr"):
        assert name in claims, name

    userinfo = oauth.get(metadata["userinfo_endpoint"]).json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["email"] == credentials[0]
    assert userinfo["email_verified"] is True
    assert "name" not in userinfo, "the account holds no name: none is invented"

    refreshed = oauth.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert oauth.get(metadata["userinfo_endpoint"]).status_code == 200

    revoked = oauth.revoke_token(metadata["revocation_endpoint"], refreshed["refresh_token"])
    assert revoked.status_code == 200
    assert oauth.get(metadata["userinfo_endpoint"]).status_code == 401

    logout = browser.http.get(
        metadata["end_session_endpoint"],
        params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": "https://rp.example.de/logged-out",
            "state": "bye",
        },
    )
    assert logout.status_code == 302
    assert logout.headers["location"] == "https://rp.example.de/logged-out?state=bye"
    again = browser.http.get(url)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login?")
