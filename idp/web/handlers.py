"""Route handler decorators whose guards get the handler itself, not a copy.

litestar hands each guard ``copy(handler)``, made for every request: on a page
that copy cost as much as the CSRF check it was made for (6% of serving the
login page). The application's one guard (:func:`idp.web.csrf.guard`) only
reads the handler's ``opt``; a guard that would change the handler must not be
installed on these.

Built on litestar's handler classes themselves (``HTTPRouteHandler``,
``ASGIRouteHandler``): subclassing its ``get``/``post`` decorator classes is
deprecated (they become functions in litestar 3).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler


class _GuardsGetHandler:
    __slots__ = ()

    async def authorize_connection(self, connection: ASGIConnection) -> None:
        for guard in self.resolve_guards():  # type: ignore[attr-defined]
            await guard(connection, self)


class route(_GuardsGetHandler, HTTPRouteHandler):
    """``litestar.route``: a page handler for the methods given, guards given the handler."""

    __slots__ = ()


class asgi(_GuardsGetHandler, ASGIRouteHandler):
    """``litestar.asgi``, guards given the handler itself."""

    __slots__ = ()


def get(path: str | None = None, **kwargs: Any) -> route:
    """``litestar.get``, guards given the handler itself."""
    return route(path, http_method=HttpMethod.GET, **kwargs)


def post(path: str | None = None, **kwargs: Any) -> route:
    """``litestar.post``, guards given the handler itself."""
    return route(path, http_method=HttpMethod.POST, **kwargs)
