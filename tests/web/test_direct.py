"""Direct routes (idp/web/protocol/direct.py): the hot endpoints for programs, answered before
litestar's router, with the same headers and error answers as through it."""

from __future__ import annotations

import logging

import pytest
from litestar.testing import TestClient
from litestar.types import Receive, Scope, Send

from idp.app import create_app
from idp.web.handlers import asgi
from idp.web.protocol import direct, wellknown
from idp.web.protocol import endpoints as protocol

SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options")


def test_the_hot_endpoints_are_direct_routes(client):
    assert set(client.app.direct) == {
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/jwks.json",
        "/token",
        "/userinfo",
        "/introspect",
        "/revoke",
    }
    handlers = set(client.app.direct.values())
    assert {h.fn for h in (*protocol.ROUTES, *wellknown.ROUTES)} == handlers


@pytest.mark.parametrize("path", ["/jwks.json", "/.well-known/openid-configuration"])
def test_a_direct_answer_equals_litestars_for_the_same_handler(client, path):
    # litestar still serves the same handler under another form of its path
    direct_answer = client.get(path)
    routed = client.get(path + "/")
    assert direct_answer.status_code == routed.status_code == 200
    assert direct_answer.content == routed.content
    same = {"content-type", "cache-control", "etag", *SECURITY_HEADERS}
    assert {k: direct_answer.headers[k] for k in same} == {k: routed.headers[k] for k in same}


def test_an_unexpected_error_in_a_direct_route_is_a_plain_500_json_and_logged(
    settings, services, monkeypatch
):
    def broken(request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services.oidc, "create_token_response", broken)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("idp.web").addHandler(handler)
    try:
        with TestClient(create_app(settings, services), base_url=settings.issuer) as client:
            response = client.post("/token", data={"grant_type": "authorization_code", "code": "x"})
    finally:
        logging.getLogger("idp.web").removeHandler(handler)
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert all(name in response.headers for name in SECURITY_HEADERS)
    assert response.headers["cache-control"] == "no-store"
    assert [r.getMessage() for r in logged] == ["unexpected error on /token"]
    assert logged[0].exc_info is not None, "the traceback goes to the log"


def test_a_handler_with_a_guard_cannot_be_a_direct_route(settings, services):
    @asgi("/guarded", copy_scope=False)  # csrf guard applies: it must go through litestar
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="csrf=False"):
        direct.App(direct=[guarded], route_handlers=[guarded])


def test_the_error_handler_is_the_nearest_registered_class():
    from litestar.exceptions import MethodNotAllowedException

    from idp.web import errors

    assert direct.error_handler(MethodNotAllowedException()) is errors.http_error
    assert direct.error_handler(errors.PageError(400, "error.400")) is errors.page_error
    assert direct.error_handler(KeyError("x")) is errors.unexpected_error
