"""Pages rendered once and reused (idp.web.rendering ``slots``) are the pages a full
render gives, for every value a visitor can put in them."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from litestar import Request

from idp.accounts.authenticators import REGISTRY
from idp.web import rendering
from idp.web.citizen.login import _LOGIN_SLOTS

HOSTILE = [
    "/",
    "/authorize/resume?flow=abc&x=1",
    "/a?b=\"quoted\"&c='single'",
    "/<script>alert(1)</script>",
    "/über/straße?ä=ö",
    "/&amp;&#x27;&lt;",
    f"/{rendering._MARK}0x",  # a marker's look-alike from another process stays text
]


def _request(app, query: str, *, presession: str, language: str, path: str = "/login") -> Request:
    """A GET /login as litestar hands it to a handler, with this browser's cookie."""
    return Request(
        {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [
                (b"cookie", f"idp_csrf={presession}".encode()),
                (b"accept-language", language.encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "app": app,
            "litestar_app": app,
            "state": {},
        }
    )


def _login_context(return_to: str) -> dict[str, object]:
    return {
        "errors": {},
        "email": "",
        "return_to": return_to,
        "register_url": "/register?" + urlencode({"return_to": return_to}),
        "sign_in": REGISTRY.sign_in(),
    }


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("return_to", HOSTILE)
def test_a_reused_login_page_is_the_page_a_full_render_gives(client, return_to, language):
    presession = "p" * 40
    query = urlencode({"return_to": return_to, "extra": '"><b>'})
    context = _login_context(return_to)

    def page(slots):
        request = _request(client.app, query, presession=presession, language=language)
        return rendering.render(request, "login.html", context, slots=slots).content

    full = page(None)
    assert page(_LOGIN_SLOTS) == full
    assert page(_LOGIN_SLOTS) == full  # and again, from the kept page
    assert rendering._MARK + "0x" not in full or return_to == HOSTILE[-1]
    token = re.search(r'name="csrf_token" value="([^"]+)"', full).group(1)
    assert token and token != "p" * 40
    hidden = re.search(r'name="return_to" value="([^"]*)"', full).group(1)
    assert unescape(hidden) == return_to


@pytest.mark.parametrize("app_name", ["Bürgerportal", "Portal \"<b>&'", "Kfz-Zulassung"])
@pytest.mark.parametrize("flow_id", HOSTILE)
def test_a_reused_consent_page_is_the_page_a_full_render_gives(client, app_name, flow_id):
    context = {
        "app": app_name,
        "flow_id": flow_id,
        "scopes": ["profile", "email"],
        "detailed": ("profile", "email", "identity"),
    }
    for language in ("de", "en"):

        def page(slots, language=language):
            request = _request(
                client.app,
                urlencode({"flow": flow_id}),
                presession="c" * 40,
                language=language,
                path="/consent",
            )
            return rendering.render(request, "consent.html", context, slots=slots).content

        full = page(None)
        assert page(("flow_id",)) == full
        hidden = re.search(r'name="flow" value="([^"]*)"', full).group(1)
        assert unescape(hidden) == flow_id


def test_each_browser_gets_its_own_token_in_the_kept_page(client):
    context = _login_context("/")
    pages = [
        rendering.render(
            _request(client.app, "", presession=c * 40, language="de"),
            "login.html",
            context,
            slots=_LOGIN_SLOTS,
        ).content
        for c in "abc"
    ]
    tokens = {re.search(r'name="csrf_token" value="([^"]+)"', p).group(1) for p in pages}
    assert len(tokens) == 3
    # the pages differ in the token only
    assert len({re.sub(r'value="[^"]+"(?=>)', "", p, count=1) for p in pages}) == 1


def test_a_value_that_is_not_plain_data_cannot_choose_a_kept_page(client):
    request = _request(client.app, "", presession="q" * 40, language="de")
    with pytest.raises(TypeError):
        rendering.render(
            request, "login.html", {**_login_context("/"), "email": {"a"}}, slots=_LOGIN_SLOTS
        )


def test_the_login_page_over_http_carries_the_query_s_return_to_and_a_working_token(client):
    first = client.get("/login", params={"return_to": "/account"})
    second = client.get("/login", params={"return_to": '/apps?a="1"'})
    assert 'name="return_to" value="/account"' in first.text
    assert 'name="return_to" value="/apps?a=&#34;1&#34;"' in second.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', second.text).group(1)
    answer = client.post(
        "/login",
        data={"csrf_token": token, "email": "nobody@example.de", "password": "x" * 12},
    )
    assert answer.status_code == 400  # the form was accepted and checked, not refused (403)
    assert "return_to" in answer.text
