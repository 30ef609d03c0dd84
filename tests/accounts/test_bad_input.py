"""Bad input on the account pages gets a readable 4xx, never a 500."""

from __future__ import annotations

import pytest

from tests.accounts.conftest import csrf_token

PAGES = ["/register", "/login", "/password/forgot", "/password/reset", "/verify-email", "/logout"]
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", PAGES)
def test_a_post_without_csrf_token_is_refused(app_client, path):
    app_client.get("/login")
    response = app_client.post(path, data={"email": "a@example.de", "password": "x"})
    assert response.status_code == 403
    assert "Bitte laden Sie die Seite neu" in response.text


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"email=%ff%fe&password=x", FORM, 400),
        (b"email=a%00b", FORM, 400),
        (b'{"email": "a@example.de"}', "application/json", 415),
        (b"email=" + b"a" * 100_000, FORM, 413),
    ],
)
def test_malformed_posts_are_refused_readably(app_client, path, body, content_type, status):
    token = csrf_token(app_client.get("/login").text)
    response = app_client.post(
        path,
        content=body + b"&csrf_token=" + token.encode(),
        headers={"content-type": content_type},
    )
    assert response.status_code == status
    assert "Das hat leider nicht geklappt" in response.text


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/register", {"email": "a" * 400 + "@example.de", "password": "x" * 4000}),
        ("/login", {"email": "a" * 4000, "password": "x" * 4000}),
        ("/password/forgot", {"email": "a" * 4000}),
        ("/verify-email", {"flow": "f" * 4000, "code": "1" * 4000}),
        ("/verify-email", {"flow": "f" * 4000, "token": "t" * 4000}),
        ("/password/reset", {"flow": "f" * 4000, "token": "t" * 4000, "password": "x"}),
    ],
)
def test_overlong_fields_are_refused_readably(app_client, path, fields):
    token = csrf_token(app_client.get("/login").text)
    response = app_client.post(path, data={**fields, "csrf_token": token})
    assert 400 <= response.status_code < 500
    assert "<h1>" in response.text


@pytest.mark.parametrize(
    "url",
    [
        "/verify-email?flow=%ff%fe",
        "/verify-email?flow=x&token=%00",
        "/password/reset?flow=%ff&token=%fe",
        "/login?return_to=%ff%fe&login_hint=%00",
        "/register?return_to=" + "a" * 5000,
    ],
)
def test_malformed_query_strings_are_not_a_500(app_client, url):
    response = app_client.get(url)
    assert response.status_code < 500
