"""A parameter sent twice is invalid_request at every protocol endpoint (RFC 6749 3.1, 3.2).

Which of the two values was meant cannot be known, so neither is taken: the error
names the parameter. Parameters the endpoints do not know are ignored, repeated or
not, as RFC 6749 3.1 asks.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.oidc import factories


def _authorize_query(info, **extra) -> list[tuple[str, str]]:
    params = [
        ("response_type", "code"),
        ("client_id", info.client_id),
        ("redirect_uri", info.redirect_uri),
        ("scope", "openid"),
        ("state", "st"),
        ("nonce", "n"),
    ]
    return params + list(extra.items())


def _code(client, db, settings, info) -> str:
    """An authorization code for a logged-in citizen (the client is first-party: no consent)."""
    token = factories.login_token(db, factories.account(db), settings)
    client.cookies.set("idp_session", token)
    response = client.get(f"/authorize?{urlencode(_authorize_query(info))}", follow_redirects=False)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def _post(client, path: str, pairs: list[tuple[str, str]], **kwargs):
    """POST a form whose fields may repeat."""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return client.post(path, content=urlencode(pairs), headers=headers, **kwargs)


def _error(response) -> tuple[str, str]:
    body = response.json()
    return body["error"], body.get("error_description", "")


@pytest.mark.parametrize("repeated", ["grant_type", "code", "redirect_uri"])
def test_a_token_request_with_a_repeated_parameter_is_invalid_request_and_keeps_the_code(
    client, db, settings, repeated
):
    info = factories.client(db, first_party=True)
    code = _code(client, db, settings, info)
    data = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", info.redirect_uri),
    ]
    twice = [*data, (repeated, dict(data)[repeated])]
    response = _post(client, "/token", twice, auth=(info.client_id, info.client_secret))
    assert response.status_code == 400
    error, description = _error(response)
    assert error == "invalid_request" and f"'{repeated}'" in description
    # Nothing was taken from the refused request: the code still works once.
    ok = client.post("/token", data=dict(data), auth=(info.client_id, info.client_secret))
    assert ok.status_code == 200, ok.text


def test_a_client_credentials_request_with_two_scopes_parameters_is_invalid_request(client, db):
    info = factories.client(
        db, grant_types=["client_credentials"], scopes=["profile", "email"], redirect_uris=[]
    )
    response = _post(
        client,
        "/token",
        [("grant_type", "client_credentials"), ("scope", "profile"), ("scope", "email")],
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 400
    assert _error(response) == (
        "invalid_request",
        "The 'scope' parameter is included more than once.",
    )


def test_a_repeated_client_id_in_the_body_is_invalid_request(client, db):
    info = factories.client(
        db,
        grant_types=["client_credentials"],
        scopes=["profile"],
        redirect_uris=[],
        token_endpoint_auth_method="client_secret_post",
    )
    response = _post(
        client,
        "/token",
        [
            ("grant_type", "client_credentials"),
            ("client_id", info.client_id),
            ("client_id", "another"),
            ("client_secret", info.client_secret),
        ],
    )
    assert response.status_code == 400
    assert _error(response)[0] == "invalid_request"


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_introspecting_or_revoking_with_a_repeated_token_is_invalid_request(client, db, path):
    info = factories.client(db)
    response = _post(
        client,
        path,
        [("token", "first"), ("token", "second")],
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 400
    error, description = _error(response)
    assert error == "invalid_request" and "'token'" in description


def test_a_userinfo_post_with_a_repeated_access_token_is_invalid_request(client):
    response = _post(client, "/userinfo", [("access_token", "a"), ("access_token", "b")])
    assert response.status_code == 400
    assert _error(response)[0] == "invalid_request"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


@pytest.mark.parametrize("repeated", ["client_id", "redirect_uri", "state"])
def test_an_authorization_request_repeating_what_its_redirect_needs_is_an_error_page(
    client, db, repeated
):
    info = factories.client(db)
    params = _authorize_query(info)
    params.append((repeated, dict(params)[repeated]))
    response = client.get(f"/authorize?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text


@pytest.mark.parametrize(
    "repeated", ["response_type", "scope", "nonce", "code_challenge", "claims"]
)
def test_an_authorization_request_repeating_another_parameter_is_redirected_invalid_request(
    client, db, repeated
):
    info = factories.client(db)
    params = _authorize_query(info, code_challenge="x" * 43, claims="{}")
    params.append((repeated, dict(params)[repeated]))
    response = client.get(f"/authorize?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st"]
    assert f"'{repeated}'" in query["error_description"][0]


def test_a_posted_authorization_request_with_a_repeated_parameter_is_refused_too(client, db):
    info = factories.client(db)
    params = [*_authorize_query(info), ("nonce", "other")]
    response = _post(client, "/authorize", params, follow_redirects=False)
    assert response.status_code == 302
    assert "error=invalid_request" in response.headers["location"]


def test_an_unknown_parameter_may_repeat_at_the_authorization_endpoint(client, db):
    info = factories.client(db)
    params = [*_authorize_query(info), ("x-trace", "1"), ("x-trace", "2")]
    response = client.get(f"/authorize?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?")


@pytest.mark.parametrize("repeated", ["post_logout_redirect_uri", "state", "client_id"])
def test_an_end_session_request_with_a_repeated_parameter_is_an_error_page(client, db, repeated):
    info = factories.client(db)
    params = [
        ("client_id", info.client_id),
        ("post_logout_redirect_uri", "https://rp.example.de/logged-out"),
        ("state", "st"),
    ]
    params.append((repeated, dict(params)[repeated]))
    response = client.get(f"/end-session?{urlencode(params)}", follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text


def test_the_app_has_no_pushed_authorization_endpoint_to_check(client):
    """PAR (RFC 9126) is not served yet; when it is, it needs a test here."""
    routes = {route.path for route in client.app.routes}
    assert "/par" not in routes
