"""Web infrastructure: headers, languages, CSRF, strict forms, errors, redirects, cookies."""

from __future__ import annotations

import re

import pytest
from litestar import get, post
from litestar.testing import TestClient

from idp.app import create_app
from idp.web.forms import FORM, Form
from idp.web.redirects import safe_return_to
from idp.web.session import cookie_name
from tests.conftest import make_settings

URLENCODED = "application/x-www-form-urlencoded"


@post("/test/echo", sync_to_thread=False, dependencies=FORM)
def echo(form: Form) -> dict[str, str]:
    return form


@post("/api/test/echo", sync_to_thread=False, opt={"csrf": False})
def api_echo() -> dict[str, str]:
    return {"ok": "yes"}


@get("/test/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internals")


@pytest.fixture
def web(settings, services):
    app = create_app(settings, services)
    for handler in (echo, api_echo, boom):
        app.register(handler)
    with TestClient(app, base_url=settings.issuer) as client:
        yield client


def _token(client: TestClient) -> str:
    """Visit a page (which issues the pre-session cookie) and compute the form token."""
    from idp.web.csrf import token_for

    client.get("/privacy")
    return token_for(client.app.state.csrf_key, client.cookies["idp_csrf"])


def test_every_page_carries_the_security_headers(web):
    response = web.get("/privacy")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers
    assert web.get("/healthz").headers["x-frame-options"] == "DENY"


def test_https_issuers_get_hsts_and_host_prefixed_cookies(db, keys_dir, clock):
    settings = make_settings(db.url, keys_dir, issuer="https://id.example.de")
    with TestClient(create_app(settings, clock=clock), base_url=settings.issuer) as client:
        response = client.get("/privacy")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "__Host-idp_csrf=" in response.headers["set-cookie"]
    assert "Secure" in response.headers["set-cookie"]
    assert cookie_name(settings) == "__Host-idp_session"


def test_pages_are_german_by_default_and_switch_to_english(web):
    german = web.get("/privacy")
    assert '<html lang="de">' in german.text and "Datenschutzhinweise" in german.text
    switch = re.search(r'<a href="([^"]+)" lang="en"', german.text).group(1)
    english = web.get(switch.replace("&amp;", "&"))
    assert '<html lang="en">' in english.text and "Privacy notice" in english.text
    # The switch is remembered in a cookie.
    assert '<html lang="en">' in web.get("/privacy").text


def test_the_browsers_language_is_honoured(web):
    response = web.get("/privacy", headers={"accept-language": "fr;q=0.9, en-GB;q=0.8, de;q=0.1"})
    assert '<html lang="en">' in response.text


def test_a_form_post_without_csrf_token_is_refused_readably(web):
    web.get("/privacy")
    response = web.post("/test/echo", data={"a": "b"})
    assert response.status_code == 403
    assert "Bitte laden Sie die Seite neu" in response.text


def test_a_token_made_for_another_browser_is_refused(web):
    token = _token(web)
    web.cookies.clear()  # another browser: a new pre-session cookie
    web.get("/privacy")
    response = web.post("/test/echo", data={"csrf_token": token})
    assert response.status_code == 403


def test_a_form_post_with_the_pages_token_passes(web):
    token = _token(web)
    response = web.post("/test/echo", data={"name": "Grüße", "csrf_token": token})
    assert response.status_code == 201
    assert response.json()["name"] == "Grüße"


def test_handlers_can_opt_out_of_csrf(web):
    assert web.post("/api/test/echo").status_code == 201


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"name=%ff%fe", URLENCODED, 400, "UTF-8"),
        (b"name=\xff", URLENCODED, 400, "UTF-8"),
        (b"name=a%00b", URLENCODED, 400, "Steuerzeichen"),
        (b"name=" + b"x" * 5000, URLENCODED, 400, "zu lang"),
        (b"name=a&name=b", URLENCODED, 400, "mehrfach"),
        (b"&".join(b"f%d=1" % i for i in range(40)), URLENCODED, 400, "zu viele Felder"),
        (b'{"name": "a"}', "application/json", 415, "Format"),
        (b"name=a", "text/plain", 415, "Format"),
        (b"name=" + b"x" * 70000, URLENCODED, 413, "zu groß"),
    ],
)
def test_malformed_posts_get_a_readable_4xx(web, body, content_type, status, message):
    token = _token(web)
    response = web.post(
        "/test/echo",
        content=body + b"&csrf_token=" + token.encode(),
        headers={"content-type": content_type},
    )
    assert response.status_code == status
    assert message in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_apis_get_json_errors(web):
    response = web.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.json()["error_description"]


def test_an_unknown_page_is_a_readable_404(web):
    response = web.get("/no-such-page")
    assert response.status_code == 404
    assert "Diese Seite gibt es nicht" in response.text


def test_a_bug_is_a_500_that_reveals_nothing(web):
    response = web.get("/test/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


def test_a_malformed_query_string_is_not_a_500(web):
    assert web.get("/privacy?lang=%ff%fe&x=%zz").status_code == 200


def test_the_stylesheet_is_served_cacheable(web):
    page = web.get("/privacy").text
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1)
    response = web.get(href)
    assert response.status_code == 200
    assert "public" in response.headers["cache-control"]
    assert response.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/authorize/resume/abc", "/authorize/resume/abc"),
        ("/account?tab=1#x", "/account?tab=1#x"),
        (None, "/account"),
        ("", "/account"),
        ("https://evil.example/", "/account"),
        ("//evil.example/", "/account"),
        ("/\\evil.example", "/account"),
        ("\\\\evil.example", "/account"),
        ("javascript:alert(1)", "/account"),
        ("/\tx", "/account"),
        ("account", "/account"),
        ("/" + "a" * 3000, "/account"),
    ],
)
def test_return_to_accepts_only_same_origin_paths(value, expected):
    assert safe_return_to(value) == expected


def test_session_cookie_is_plain_over_http(settings):
    assert cookie_name(settings) == "idp_session"


def test_catalogs_have_the_same_messages():
    from idp.web.i18n import catalog

    assert set(catalog("de")) == set(catalog("en"))
