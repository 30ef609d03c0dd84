"""Hostile input found by an outside review: each case answers 4xx as the specs say, never 500.

Protocol endpoints answer with the OAuth/OIDC error (JSON, or the error page where
redirecting is not allowed), pages with a readable 400 page, and none of them logs
a traceback.
"""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oidc import factories

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
HOSTILE_CHARACTERS = ['"', "\\", "\t", "\x00", "ü", "\u2028"]
NESTED = "[" * 50_000 + "]" * 50_000


@pytest.fixture
def clean_log(caplog):
    """Fails the test if anything was logged at ERROR or with a traceback."""
    caplog.set_level(logging.WARNING)
    yield caplog
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _authorize(client, info, **extra):
    params = {
        "response_type": "code",
        "client_id": info.client_id,
        "redirect_uri": info.redirect_uri,
        "scope": "openid",
        "state": "st",
    }
    params.update(extra)
    return client.get(f"/authorize?{urlencode(params)}", follow_redirects=False)


@pytest.mark.parametrize("character", HOSTILE_CHARACTERS)
def test_a_redirect_uri_with_a_forbidden_character_is_an_error_page(
    client, db, clean_log, character
):
    info = factories.client(db)
    response = _authorize(client, info, redirect_uri=f"{info.redirect_uri}{character}x")
    assert response.status_code == 400
    assert "invalid_request" in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize("character", HOSTILE_CHARACTERS)
def test_a_response_type_with_a_forbidden_character_is_refused_as_invalid_request(
    client, db, clean_log, character
):
    info = factories.client(db)
    response = _authorize(client, info, response_type=f"code{character}")
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["error"] == ["invalid_request"] and query["state"] == ["st"]
    else:
        assert "invalid_request" in response.text


def test_a_state_with_a_forbidden_character_is_an_error_page_not_echoed(client, db, clean_log):
    info = factories.client(db)
    response = _authorize(client, info, state='a"\x00b', prompt="none")
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "claims", ['{"userinfo":' * 1_500 + "{}" + "}" * 1_500, "[" * 6_000 + "]" * 6_000]
)
def test_deeply_nested_claims_json_is_refused_as_invalid_request(client, db, clean_log, claims):
    info = factories.client(db)
    params = {
        "response_type": "code",
        "client_id": info.client_id,
        "redirect_uri": info.redirect_uri,
        "scope": "openid",
        "state": "st",
        "claims": claims,
    }
    response = client.post("/authorize", data=params, follow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"]


def _nested_jwt() -> str:
    """A JWT-looking string whose header segment is deeply nested JSON."""
    return f"{_b64(NESTED[:6000].encode())}.{_b64(b'{}')}.{_b64(b'sig')}"


def test_a_bearer_token_with_a_deeply_nested_segment_is_an_invalid_token(client, clean_log):
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {_nested_jwt()}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_introspecting_or_revoking_a_deeply_nested_token_is_no_error(client, db, clean_log, path):
    info = factories.client(db)
    response = client.post(
        path, data={"token": _nested_jwt()}, auth=(info.client_id, info.client_secret)
    )
    assert response.status_code == 200


def test_an_id_token_hint_with_a_deeply_nested_segment_is_an_error_page(client, clean_log):
    response = client.get(f"/end-session?id_token_hint={_nested_jwt()}")
    assert response.status_code == 400
    assert "invalid_request" in response.text


@pytest.mark.parametrize(
    "url",
    [
        "/consent?flow=%00",
        "/authorize/resume/%00",
        "/authorize/resume/a%00b",
        "/login?flow=%00&return_to=/authorize/resume/%00",
        "/step-up?return_to=/authorize/resume/%00",
        "/password/reset?flow=%00&token=%00",
        "/verify-email?flow=%00",
    ],
)
def test_a_nul_in_a_page_address_is_a_readable_400(client, clean_log, url):
    response = client.get(url)
    assert response.status_code == 400
    assert "<h1>" in response.text


def test_a_nul_in_a_refresh_scope_is_invalid_request(client, db, clean_log):
    info = factories.client(db)
    response = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "x", "scope": "openid\x00"},
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/static/" + "a" * 300, "/static/%00", "/static/a%00.css"])
def test_hostile_static_file_names_are_not_found(client, clean_log, path):
    response = client.get(path)
    assert response.status_code in (400, 404)


def _assertion_client(db):
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    info = factories.client(
        db,
        grant_types=["client_credentials"],
        scopes=["profile"],
        redirect_uris=[],
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [key.as_dict(private=False)]},
    )
    return info, key


def _assertion_request(client, settings, info, key, *, exp: int, iat: int | None = None):
    now = int(time.time())
    claims = {
        "iss": info.client_id,
        "sub": info.client_id,
        "aud": f"{settings.issuer}/token",
        "iat": now if iat is None else iat,
        "exp": exp,
        "jti": f"j-{exp}",
    }
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key)
    return client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


def test_a_client_assertion_with_an_absurd_exp_is_invalid_client(client, db, settings, clean_log):
    info, key = _assertion_client(db)
    response = _assertion_request(client, settings, info, key, exp=99999999999999)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_a_client_assertion_valid_for_ten_years_is_invalid_client(client, db, settings, clean_log):
    info, key = _assertion_client(db)
    now = int(time.time())
    response = _assertion_request(client, settings, info, key, exp=now + 10 * 365 * 86400)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert "lifetime" in response.json()["error_description"]


def test_a_client_assertion_within_the_lifetime_cap_is_accepted(client, db, settings, clean_log):
    info, key = _assertion_client(db)
    cap = settings.client_assertion_max_seconds
    response = _assertion_request(client, settings, info, key, exp=int(time.time()) + cap - 5)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("credentials", [b"\xff\xfe:\xfd", b"client:\xc3\x28", b"\x80"])
def test_basic_credentials_that_are_not_utf8_are_invalid_client(
    client, clean_log, path, credentials
):
    header = "Basic " + base64.b64encode(credentials).decode()
    response = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "t"},
        headers={"Authorization": header},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_basic_client_id_with_an_encoded_nul_is_invalid_client(client, clean_log):
    header = "Basic " + base64.b64encode(quote("a\x00b").encode() + b":secret").decode()
    response = client.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("header", ["Bearer ", "Basic ", "Basic  \t"])
def test_an_authorization_scheme_without_credentials_is_invalid_client(
    client, clean_log, path, header
):
    response = client.post(path, data={"token": "t"}, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_client_assertion_with_a_deeply_nested_header_is_invalid_client(client, clean_log):
    header = _b64(("[" * 6_000).encode())
    response = client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": f"{header}.{_b64(b'{}')}.{_b64(b'sig')}",
        },
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
