"""Route handler decorators whose guards get the handler itself, not a copy.

litestar hands each guard ``copy(handler)``, made for every request: on a page
that copy cost as much as the CSRF check it was made for (6% of serving the
login page). The application's one guard (:func:`idp.web.csrf.guard`) only
reads the handler's ``opt``; a guard that would change the handler must not be
installed on these.
"""

from __future__ import annotations

import litestar
from litestar.connection import ASGIConnection


class _GuardsGetHandler:
    __slots__ = ()

    async def authorize_connection(self, connection: ASGIConnection) -> None:
        for guard in self.resolve_guards():  # type: ignore[attr-defined]
            await guard(connection, self)


class get(_GuardsGetHandler, litestar.get):
    """``litestar.get``, guards given the handler itself."""

    __slots__ = ()


class post(_GuardsGetHandler, litestar.post):
    """``litestar.post``, guards given the handler itself."""

    __slots__ = ()


class route(_GuardsGetHandler, litestar.route):
    """``litestar.route``, guards given the handler itself."""

    __slots__ = ()


class asgi(_GuardsGetHandler, litestar.asgi):
    """``litestar.asgi``, guards given the handler itself."""

    __slots__ = ()
