"""oidcc-basic-certification-test-plan: one test per module (module name in each docstring)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import httpx
from joserfc import jwt

from tests.conformance.conftest import OP, OTHER_REDIRECT_URI, s256
from tests.oidc import factories
from tests.oidc.factories import callback_params


def test_server_metadata(op: OP):
    """oidcc-server: discovery has what a Basic OP needs, and nothing unsafe."""
    m = op.metadata
    assert m["issuer"] == op.url
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert m[name].startswith(op.url)
    assert m["response_types_supported"] == ["code"]
    assert "public" in m["subject_types_supported"]
    assert "RS256" in m["id_token_signing_alg_values_supported"]
    assert "none" not in m["id_token_signing_alg_values_supported"]
    assert "openid" in m["scopes_supported"]
    assert httpx.get(f"{op.url}/.well-known/oauth-authorization-server").json() == m


def test_response_type_missing(op: OP):
    """oidcc-response-type-missing: an error goes back to the client, never a code."""
    response = op.browser.http.get(op.authorize_url(response_type=None))
    params = callback_params(response)
    assert params["error"] in ("unsupported_response_type", "invalid_request")
    assert "code" not in params


def test_id_token_signature_and_kid(op: OP):
    """oidcc-server / oidcc-idtoken-signature: signed with a published key named by kid."""
    result = op.flow()
    kid = result.id_header["kid"]
    published = {key["kid"]: key for key in httpx.get(op.metadata["jwks_uri"]).json()["keys"]}
    assert kid in published
    assert published[kid]["alg"] == result.id_header["alg"] == "RS256"


def test_unsigned_id_tokens_are_never_issued(op: OP):
    """oidcc-idtoken-unsigned: alg none is neither advertised nor used."""
    assert "none" not in op.metadata["id_token_signing_alg_values_supported"]
    result = op.flow()
    assert result.id_header["alg"] != "none"
    assert result.tokens["id_token"].count(".") == 2 and not result.tokens["id_token"].endswith(".")


def test_userinfo_get(op: OP):
    """oidcc-userinfo-get."""
    result = op.flow()
    response = op.userinfo(result.tokens["access_token"])
    assert response.status_code == 200
    assert response.json()["sub"] == result.id_token["sub"]


def test_userinfo_post_header(op: OP):
    """oidcc-userinfo-post-header."""
    result = op.flow()
    response = httpx.post(
        op.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {result.tokens['access_token']}"},
    )
    assert response.status_code == 200
    assert response.json()["sub"] == result.id_token["sub"]


def test_userinfo_post_body(op: OP):
    """oidcc-userinfo-post-body."""
    result = op.flow()
    response = httpx.post(
        op.metadata["userinfo_endpoint"], data={"access_token": result.tokens["access_token"]}
    )
    assert response.status_code == 200
    assert response.json()["sub"] == result.id_token["sub"]


def test_code_flow_without_nonce_succeeds(op: OP):
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow."""
    result = op.flow(nonce=None)
    assert "nonce" not in result.id_token


def _scope(op: OP, scope: str) -> dict:
    result = op.flow(scope=scope)
    assert set(result.tokens["scope"].split()) == set(scope.split())
    return op.userinfo(result.tokens["access_token"]).json()


def test_scope_profile(op: OP):
    """oidcc-scope-profile: profile claims only from data the account has."""
    info = _scope(op, "openid profile")
    assert "updated_at" in info and "email" not in info


def test_scope_email(op: OP):
    """oidcc-scope-email."""
    info = _scope(op, "openid email")
    assert info["email"] == op.credentials[0] and info["email_verified"] is True


def test_scope_address(op: OP):
    """oidcc-scope-address: accepted; the account holds no address, so none is returned."""
    info = _scope(op, "openid address")
    assert "address" not in info


def test_scope_phone(op: OP):
    """oidcc-scope-phone: accepted; the account holds no phone number."""
    info = _scope(op, "openid phone")
    assert "phone_number" not in info


def test_scope_all(op: OP):
    """oidcc-scope-all."""
    info = _scope(op, "openid profile email address phone")
    assert {"sub", "email", "updated_at"} <= set(info)


def test_other_scope_order_succeeds(op: OP):
    """oidcc-ensure-other-scope-order-succeeds."""
    result = op.flow(scope="email openid")
    assert "email" in op.userinfo(result.tokens["access_token"]).json()


def test_display_page(op: OP):
    """oidcc-display-page."""
    assert "code" in op.flow(display="page").params


def test_display_popup(op: OP):
    """oidcc-display-popup."""
    assert "code" in op.flow(display="popup").params


def test_prompt_login(op: OP, clock):
    """oidcc-prompt-login: a second login happens and auth_time moves."""
    first = op.flow()
    clock.advance(timedelta(seconds=2))
    op.browser.pages.clear()
    second = op.flow(prompt="login")
    assert any("/login" in page for page in op.browser.pages)
    assert second.id_token["auth_time"] > first.id_token["auth_time"]


def test_prompt_none_not_logged_in(op: OP):
    """oidcc-prompt-none-not-logged-in: login_required (or interaction/consent_required)."""
    response = op.browser.http.get(op.authorize_url(prompt="none"))
    params = callback_params(response)
    assert params["error"] in ("login_required", "interaction_required", "consent_required")


def test_prompt_none_logged_in(op: OP):
    """oidcc-prompt-none-logged-in: a code without any page."""
    first = op.flow()
    op.browser.pages.clear()
    second = op.flow(prompt="none")
    assert not any("/login" in page for page in op.browser.pages)
    assert second.id_token["sub"] == first.id_token["sub"]


def test_max_age_1(op: OP, clock):
    """oidcc-max-age-1: an older login is redone; auth_time is returned and fresh."""
    first = op.flow()
    clock.advance(timedelta(seconds=2))
    op.browser.pages.clear()
    second = op.flow(max_age="1")
    assert any("/login" in page for page in op.browser.pages)
    assert second.id_token["auth_time"] >= first.id_token["auth_time"] + 2


def test_max_age_10000(op: OP):
    """oidcc-max-age-10000: the session is fresh enough; auth_time unchanged."""
    first = op.flow()
    op.browser.pages.clear()
    second = op.flow(max_age="10000")
    assert not any("/login" in page for page in op.browser.pages)
    assert second.id_token["auth_time"] == first.id_token["auth_time"]


def test_unknown_parameter_is_ignored(op: OP):
    """oidcc-ensure-request-with-unknown-parameter-succeeds."""
    assert "code" in op.flow(extra=secrets.token_urlsafe(8)).params


def test_id_token_hint(op: OP):
    """oidcc-id-token-hint: a hint naming the logged-in user with prompt=none gives a code."""
    first = op.flow()
    second = op.flow(prompt="none", id_token_hint=first.tokens["id_token"])
    assert second.id_token["sub"] == first.id_token["sub"]


def test_login_hint(op: OP):
    """oidcc-login-hint: the login page gets the hint (the email is filled in)."""
    response = op.browser.http.get(op.authorize_url(login_hint=op.credentials[0]))
    page = op.browser.http.get(response.headers["location"])
    assert f'value="{op.credentials[0]}"' in page.text
    assert "code" in op.flow(login_hint=op.credentials[0]).params


def test_ui_locales(op: OP):
    """oidcc-ui-locales: the login page speaks the asked language."""
    response = op.browser.http.get(op.authorize_url(ui_locales="en"))
    page = op.browser.http.get(response.headers["location"])
    assert '<html lang="en">' in page.text
    assert "code" in op.flow(ui_locales="en").params


def test_claims_locales(op: OP):
    """oidcc-claims-locales: accepted and the flow succeeds."""
    result = op.flow(scope="openid profile", claims_locales="de")
    assert op.userinfo(result.tokens["access_token"]).status_code == 200


def test_acr_values(op: OP):
    """oidcc-ensure-request-with-acr-values-succeeds."""
    result = op.flow(acr_values="http://eidas.europa.eu/LoA/low")
    assert result.id_token["acr"] == "http://eidas.europa.eu/LoA/low"


def test_code_reuse(op: OP):
    """oidcc-codereuse: a second redemption fails; the first access token is revoked."""
    result = op.authorize(nonce="n")
    first = op.redeem(result)
    assert first.status_code == 200
    again = op.redeem(result)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert op.userinfo(first.json()["access_token"]).status_code == 401


def test_code_reuse_after_30_seconds(op: OP, clock):
    """oidcc-codereuse-30seconds."""
    result = op.authorize(nonce="n")
    first = op.redeem(result)
    assert first.status_code == 200
    clock.advance(timedelta(seconds=30))
    again = op.redeem(result)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert op.userinfo(first.json()["access_token"]).status_code == 401


def test_unregistered_redirect_uri_is_rejected(op: OP):
    """oidcc-ensure-registered-redirect-uri: an error page, never a redirect."""
    response = op.browser.http.get(op.authorize_url(redirect_uri="https://evil.example/cb"))
    assert response.status_code == 400
    assert "location" not in response.headers


def test_post_to_the_authorization_endpoint(op: OP):
    """oidcc-ensure-post-request-succeeds."""
    op.flow()
    query = dict(
        response_type="code",
        client_id=op.client.client_id,
        redirect_uri=OTHER_REDIRECT_URI,
        scope="openid",
        state="s",
        nonce="n",
    )
    response = op.browser.http.post(op.metadata["authorization_endpoint"], data=query)
    assert response.status_code == 302
    assert response.headers["location"].startswith(OTHER_REDIRECT_URI + "?code=")


def test_client_secret_post(op: OP, db):
    """oidcc-server-client-secret-post: a client registered for it authenticates so."""
    client = factories.client(db, token_endpoint_auth_method="client_secret_post", first_party=True)
    op.client = client
    result = op.authorize(redirect_uri=client.redirect_uri, nonce="n")
    response = op.redeem(result, auth="post", redirect_uri=client.redirect_uri)
    assert response.status_code == 200 and "id_token" in response.json()


def test_request_object_is_rejected_as_unsupported(op: OP):
    """oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported."""
    assert op.metadata["request_parameter_supported"] is False
    request_object = jwt.encode({"alg": "none"}, {"scope": "openid"}, None, algorithms=["none"])
    params = op.authorize(request=request_object, login=False).params
    assert params["error"] == "request_not_supported"


def test_request_uri_is_rejected_as_unsupported(op: OP):
    """oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported."""
    assert op.metadata["request_uri_parameter_supported"] is False
    params = op.authorize(request_uri="https://rp.example.de/request.jwt", login=False).params
    assert params["error"] == "request_uri_not_supported"


def test_essential_claims(op: OP):
    """oidcc-claims-essential: an essential userinfo claim within the scopes is returned."""
    claims = json.dumps({"userinfo": {"email": {"essential": True}}})
    result = op.flow(scope="openid email", claims=claims)
    assert "email" in op.userinfo(result.tokens["access_token"]).json()


def test_refresh_token(op: OP, clock):
    """oidcc-refresh-token: offline_access gives a refresh token that works once."""
    result = op.flow(scope="openid offline_access", prompt="consent")
    refresh = result.tokens["refresh_token"]
    auth = (op.client.client_id, op.client.client_secret)
    data = {"grant_type": "refresh_token", "refresh_token": refresh}
    first = httpx.post(op.metadata["token_endpoint"], data=data, auth=auth)
    assert first.status_code == 200
    assert op.userinfo(first.json()["access_token"]).status_code == 200
    # A second use within IDP_REFRESH_REUSE_GRACE_SECONDS is taken for a retry.
    clock.advance(timedelta(seconds=op.server.settings.refresh_reuse_grace_seconds + 1))
    reused = httpx.post(op.metadata["token_endpoint"], data=data, auth=auth)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_pkce(op: OP):
    """PKCE (RFC 7636, S256): the right verifier is needed."""
    verifier = secrets.token_urlsafe(48)
    result = op.authorize(code_challenge=s256(verifier), code_challenge_method="S256")
    wrong = op.redeem(result, code_verifier=secrets.token_urlsafe(48))
    assert wrong.json()["error"] == "invalid_grant"
    result = op.authorize(code_challenge=s256(verifier), code_challenge_method="S256")
    assert op.redeem(result, code_verifier=verifier).status_code == 200
