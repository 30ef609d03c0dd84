"""Direct routes: the hottest endpoints for programs, called without litestar's router.

Discovery, JWKS, token, userinfo, introspection and revocation are raw ASGI
handlers already (idp/web/protocol/wellknown.py, idp/web/protocol/endpoints.py).
Reaching them through litestar would add its router, the route's guard (a no-op
for them: they take no form from a browser) and its exception middleware's
wrapper, about a third of a JWKS request (figures in bench/README.md).

:class:`App` is the litestar application with a table of exact paths in front
of it: a request for one of them calls its handler at once, with what litestar
would have given it (``scope["app"]``, the ``before_send`` hooks that add the
security headers) and the same error answers (``errors.HANDLERS``, rendered as
litestar renders them). Every other request, any other form of these paths
(a trailing slash, say) and the lifespan go to litestar as before, where the
same handlers stay registered.

It is also where every request first arrives, so an address with a NUL in its path
or query is refused here (400), before any handler could take it into a query:
PostgreSQL text cannot hold NUL, and no address of ours has one. /authorize and
/end-session check their own query, to answer as OpenID Connect asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Litestar, Request
from litestar.handlers import ASGIRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from idp.web import errors
from idp.web.errors import PageError


def error_handler(exc: Exception) -> Any:
    """The handler ``errors.HANDLERS`` has for ``exc``: the nearest class that has one
    (``Exception`` has one, so every exception finds a handler)."""
    return next(errors.HANDLERS[kind] for kind in type(exc).__mro__ if kind in errors.HANDLERS)


# Browser-facing protocol endpoints check their parameters themselves (idp/oidc/requests.py)
# and answer as the specs say: an error page, or an error redirected to the client.
CHECKS_OWN_QUERY = frozenset({"/authorize", "/end-session"})


def has_nul(scope: Scope) -> bool:
    """Whether the request's path or query string carries a NUL (``%00`` once decoded)."""
    path = scope["path"]
    if "\x00" in path:
        return True
    return b"%00" in scope["query_string"] and path not in CHECKS_OWN_QUERY


class App(Litestar):
    """litestar's application, with ``direct`` raw ASGI route handlers dispatched first."""

    def __init__(self, *, direct: Iterable[ASGIRouteHandler], **config: Any) -> None:
        super().__init__(**config)
        self.direct: dict[str, ASGIApp] = {}
        for handler in direct:
            if handler.opt.get("csrf", True):
                raise ValueError(f"{handler}: a direct route skips the guards; it needs csrf=False")
            for path in handler.paths:
                self.direct[path] = handler.fn  # type: ignore[assignment]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        handler = self.direct.get(scope["path"])
        refused = has_nul(scope)
        if handler is None and not refused:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = scope["litestar_app"] = self
        scope.setdefault("state", {})
        started = False
        hooks = self.before_send

        async def send_with_hooks(message: Message) -> None:
            nonlocal started
            for hook in hooks:
                await hook(message, scope)
            started = True
            await send(message)

        try:
            if refused:
                raise PageError(400, "error.nul_in_address")
            await handler(scope, receive, send_with_hooks)
        except Exception as exc:
            if started:
                raise  # the server logs it and closes the connection: the answer is cut
            await self._answer_error(scope, receive, send_with_hooks, exc)

    async def _answer_error(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception
    ) -> None:
        request: Request = self.request_class(scope=scope, receive=receive, send=send)
        response = error_handler(exc)(request, exc)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)
