"""Protocol endpoints for programs: token, userinfo, introspection, revocation.

Thin: read the parameters once, call the provider (idp/oidc), answer. They are
authenticated by client credentials or bearer tokens, not by the browser, so
the CSRF guard does not apply. A client-credentials grant with a cached client
is a signature and no database work: it stays on the event loop; everything
that reads or writes the database runs in a worker thread.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread
from litestar import Request, Response, post, route
from litestar.enums import HttpMethod

from idp.oidc import userinfo as userinfo_action
from idp.oidc.adapter import ProtocolResponse, protocol_request, read_params, to_response

PROGRAMS = {"csrf": False}


def _call(request: Request, params: list[tuple[str, str]], action: Any) -> Response[bytes]:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        response: ProtocolResponse = action(services.oidc, protocol_request(request, params, uow))
    return to_response(response)


def _stays_on_loop(params: list[tuple[str, str]]) -> bool:
    names = {name for name, _ in params}
    grant_type = next((value for name, value in params if name == "grant_type"), None)
    return grant_type == "client_credentials" and "client_assertion" not in names


@post("/token", opt=PROGRAMS, status_code=200)
async def token(request: Request) -> Response[bytes]:
    """The token endpoint (RFC 6749 3.2)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_token_response(oauth_request)

    if _stays_on_loop(params):
        return _call(request, params, action)
    return await anyio.to_thread.run_sync(partial(_call, request, params, action))


@route("/userinfo", http_method=[HttpMethod.GET, HttpMethod.POST], opt=PROGRAMS, status_code=200)
async def userinfo(request: Request) -> Response[bytes]:
    """The UserInfo endpoint (OIDC Core 5.3), GET or POST."""
    params = await read_params(request) if request.method == "POST" else []
    services = request.app.state.services

    def action() -> Response[bytes]:
        with services.db.unit_of_work() as uow:
            response = userinfo_action.userinfo(
                services.oidc, uow, request.headers.get("authorization"), dict(params)
            )
        return to_response(response)

    return await anyio.to_thread.run_sync(action)


@post("/introspect", opt=PROGRAMS, status_code=200)
async def introspect(request: Request) -> Response[bytes]:
    """Token introspection (RFC 7662)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_endpoint_response("introspection", oauth_request)

    return await anyio.to_thread.run_sync(partial(_call, request, params, action))


@post("/revoke", opt=PROGRAMS, status_code=200)
async def revoke(request: Request) -> Response[bytes]:
    """Token revocation (RFC 7009)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_endpoint_response("revocation", oauth_request)

    return await anyio.to_thread.run_sync(partial(_call, request, params, action))


ROUTES = [token, userinfo, introspect, revoke]
