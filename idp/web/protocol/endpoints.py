"""Protocol endpoints for programs: token, userinfo, introspection, revocation.

Thin: read the parameters once, call the provider (idp/oidc), answer. They are
authenticated by client credentials or bearer tokens, not by the browser, so
the CSRF guard does not apply.

They are ASGI handlers (idp/web/protocol/adapter.py says why): the form comes from
``read_program_params``, the answer goes out through ``send_response``;
errors are raised as litestar's exceptions and rendered by the one error
handler, and the security headers are added on the way out, as everywhere.
Methods are checked here as litestar checks them for other routes (405 with
``Allow``, 204 for ``OPTIONS``).

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
from litestar.exceptions import MethodNotAllowedException
from litestar.types import Receive, Scope, Send

from idp.oidc import userinfo as userinfo_action
from idp.oidc.requests import (
    Awaiting,
    Payload,
    ProtocolResponse,
    credentials_error,
    parameter_error,
)
from idp.web.handlers import asgi
from idp.web.protocol.adapter import (
    ScopeHeaders,
    program_request,
    read_program_params,
    send_response,
)

PROGRAMS = {"csrf": False}
ON_LOOP_GRANTS = frozenset({"client_credentials", "refresh_token"})
POST_ONLY = ("POST",)
GET_OR_POST = ("GET", "POST")


async def _method_allowed(scope: Scope, send: Send, methods: tuple[str, ...]) -> bool:
    """True if the handler serves this method; answers OPTIONS, refuses the others (405)."""
    method = scope["method"]
    if method in methods:
        return True
    if method == "OPTIONS":
        allow = ", ".join(sorted((*methods, "OPTIONS")))
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"allow", allow.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False
    raise MethodNotAllowedException(headers={"Allow": ", ".join((*methods, "OPTIONS"))})


WRITES, READS, NO_DATABASE = "writes", "reads", "none"


def _call(
    scope: Scope, params: list[tuple[str, str]], action: Any, database: str = WRITES
) -> ProtocolResponse:
    services = scope["app"].state.services
    if database == NO_DATABASE:
        return action(services.oidc, program_request(scope, params))
    if database == READS:
        with services.db.read_session() as session:
            return action(services.oidc, program_request(scope, params, session))
    # Begun when first used: a refresh-token rotation may never touch it.
    with services.db.lazy_unit_of_work() as uow:
        return action(services.oidc, program_request(scope, params, uow))  # type: ignore[arg-type]


# A request pauses at most this often (a refresh: its rotation; introspection: a liveness read).
MAX_PAUSES = 2


async def _call_awaiting(
    scope: Scope, params: list[tuple[str, str]], action: Any, database: str = WRITES
) -> ProtocolResponse:
    """:func:`_call` on the event loop, with the round trips authlib's flow needs awaited.

    On PostgreSQL a statement through the synchronous driver would hold the loop for its
    round trip (a refresh's commit also waits for the WAL flush). The request ``awaits``:
    the flow stops where it needs one (:class:`Awaiting`, raised only after the client
    authenticated), the step is awaited and the same request is answered again.
    """
    services = scope["app"].state.services
    scoped = services.db.read_session() if database == READS else services.db.lazy_unit_of_work()
    with scoped as uow:
        request = program_request(scope, params, uow)
        request.awaits = services.db.awaited is not None
        for _ in range(MAX_PAUSES):
            try:
                return action(services.oidc, request)
            except Awaiting as paused:
                step = paused.step
            # Awaited outside the handler: the exception, its traceback and authlib's frames
            # are freed now, not carried through the wait into the collector's older
            # generations (which made full collections of ~100 ms frequent).
            await step()
        request.awaits = False  # a step that left nothing behind: answer synchronously
        return action(services.oidc, request)


async def _refused(scope: Scope, send: Send, params: list[tuple[str, str]]) -> bool:
    """Answer a request whose parameters or Basic credentials cannot be taken as sent
    (idp/oidc/requests.py says what is checked); True if it was answered so."""
    authorization = ScopeHeaders(scope["headers"]).get("authorization")
    error = parameter_error(Payload(params).datalist) or credentials_error(authorization)
    if error is None:
        return False
    await send_response(send, ProtocolResponse(*error()))
    return True


def _value(params: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in params if key == name), None)


def _on_loop(params: list[tuple[str, str]]) -> bool:
    return _value(params, "client_assertion") is None


async def _run(
    scope: Scope, params: list[tuple[str, str]], action: Any, database: str = WRITES
) -> ProtocolResponse:
    if _on_loop(params):
        return _call(scope, params, action, database)
    return await anyio.to_thread.run_sync(partial(_call, scope, params, action, database))


def _create_token_response(provider: Any, oauth_request: Any) -> ProtocolResponse:
    return provider.create_token_response(oauth_request)


def _introspection_response(provider: Any, oauth_request: Any) -> ProtocolResponse:
    return provider.create_endpoint_response("introspection", oauth_request)


def _revocation_response(provider: Any, oauth_request: Any) -> ProtocolResponse:
    return provider.create_endpoint_response("revocation", oauth_request)


@asgi("/token", opt=PROGRAMS, copy_scope=False)
async def token(scope: Scope, receive: Receive, send: Send) -> None:
    """The token endpoint (RFC 6749 3.2)."""
    if not await _method_allowed(scope, send, POST_ONLY):
        return
    params = await read_program_params(scope, receive)
    if await _refused(scope, send, params):
        return
    grant_type = _value(params, "grant_type")
    if grant_type not in ON_LOOP_GRANTS:
        # The code grant's unit of work where the database answers it best; a client
        # assertion (whose keys may be fetched from the client) always in a thread.
        work = partial(_call, scope, params, _create_token_response)
        if _on_loop(params):
            response = await scope["app"].state.services.db.run_sync(work)
        else:
            response = await anyio.to_thread.run_sync(work)
    elif grant_type == "refresh_token" and _on_loop(params):
        response = await _call_awaiting(scope, params, _create_token_response)
    else:
        # A client-credentials grant authenticated by a secret reads only the client cache.
        secret_cc = grant_type == "client_credentials" and _on_loop(params)
        response = await _run(
            scope, params, _create_token_response, NO_DATABASE if secret_cc else WRITES
        )
    await send_response(send, response)


@asgi("/userinfo", opt=PROGRAMS, copy_scope=False)
async def userinfo(scope: Scope, receive: Receive, send: Send) -> None:
    """The UserInfo endpoint (OIDC Core 5.3), GET or POST."""
    if not await _method_allowed(scope, send, GET_OR_POST):
        return
    params = await read_program_params(scope, receive)
    services = scope["app"].state.services
    authorization = ScopeHeaders(scope["headers"]).get("authorization")
    error = parameter_error(Payload(params).datalist)
    if error is not None:
        response = userinfo_action.challenge(error)
    else:
        response = await userinfo_action.userinfo(
            services.oidc, services.db, authorization, dict(params)
        )
    await send_response(send, response)


@asgi("/introspect", opt=PROGRAMS, copy_scope=False)
async def introspect(scope: Scope, receive: Receive, send: Send) -> None:
    """Token introspection (RFC 7662)."""
    if not await _method_allowed(scope, send, POST_ONLY):
        return
    params = await read_program_params(scope, receive)
    if await _refused(scope, send, params):
        return
    if _on_loop(params):  # only reads
        response = await _call_awaiting(scope, params, _introspection_response, READS)
    else:  # private_key_jwt authentication writes its jti, in a unit of work
        response = await _run(scope, params, _introspection_response)
    await send_response(send, response)


@asgi("/revoke", opt=PROGRAMS, copy_scope=False)
async def revoke(scope: Scope, receive: Receive, send: Send) -> None:
    """Token revocation (RFC 7009)."""
    if not await _method_allowed(scope, send, POST_ONLY):
        return
    params = await read_program_params(scope, receive)
    if await _refused(scope, send, params):
        return
    await send_response(send, await _run(scope, params, _revocation_response))


ROUTES = [token, userinfo, introspect, revoke]
