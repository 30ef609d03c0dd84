"""Protocol endpoints for programs: token, userinfo, introspection, revocation.

Thin: read the parameters once, call the provider (idp/oidc), answer. They are
authenticated by client credentials or bearer tokens, not by the browser, so
the CSRF guard does not apply.

Where each request runs is chosen by measurement (PERFORMANCE.md): work that is
a cache hit, a signature and a few short statements runs on the event loop,
since a hop to a worker thread (and the GIL hand-offs around each statement)
costs more than the work. Work that waits long goes to a thread: the code
exchange (an RS256 ID token costs about 1 ms) and ``private_key_jwt`` client
authentication (it may fetch the client's key set).
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
ON_LOOP_GRANTS = frozenset({"client_credentials", "refresh_token"})


def _call(
    request: Request, params: list[tuple[str, str]], action: Any, database: bool = True
) -> Response[bytes]:
    services = request.app.state.services
    if not database:
        response: ProtocolResponse = action(services.oidc, protocol_request(request, params))
        return to_response(response)
    with services.db.unit_of_work() as uow:
        response = action(services.oidc, protocol_request(request, params, uow))
    return to_response(response)


def _value(params: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in params if key == name), None)


def _on_loop(params: list[tuple[str, str]]) -> bool:
    return _value(params, "client_assertion") is None


async def _run(
    request: Request, params: list[tuple[str, str]], action: Any, database: bool = True
) -> Response[bytes]:
    if _on_loop(params):
        return _call(request, params, action, database)
    return await anyio.to_thread.run_sync(partial(_call, request, params, action, database))


@post("/token", opt=PROGRAMS, status_code=200)
async def token(request: Request) -> Response[bytes]:
    """The token endpoint (RFC 6749 3.2)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_token_response(oauth_request)

    grant_type = _value(params, "grant_type")
    if grant_type not in ON_LOOP_GRANTS:
        return await anyio.to_thread.run_sync(partial(_call, request, params, action))
    # A client-credentials grant authenticated by a secret reads only the client cache.
    database = grant_type != "client_credentials" or not _on_loop(params)
    return await _run(request, params, action, database)


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

    return action()


@post("/introspect", opt=PROGRAMS, status_code=200)
async def introspect(request: Request) -> Response[bytes]:
    """Token introspection (RFC 7662)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_endpoint_response("introspection", oauth_request)

    return await _run(request, params, action)


@post("/revoke", opt=PROGRAMS, status_code=200)
async def revoke(request: Request) -> Response[bytes]:
    """Token revocation (RFC 7009)."""
    params = await read_params(request)

    def action(provider: Any, oauth_request: Any) -> ProtocolResponse:
        return provider.create_endpoint_response("revocation", oauth_request)

    return await _run(request, params, action)


ROUTES = [token, userinfo, introspect, revoke]
