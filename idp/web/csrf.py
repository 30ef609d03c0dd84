"""CSRF protection for every form: a signed double-submit token.

A browser gets a random pre-session id in a cookie (``__Host-idp_csrf`` over
https) the first time a page is rendered for it. Forms carry
``csrf_token = HMAC(key, pre-session id)``. One guard, installed on the whole
application, checks every unsafe request (POST, PUT, PATCH, DELETE) against
the cookie; handlers that must accept cross-site requests by design (protocol
endpoints authenticated otherwise) opt out with ``opt={"csrf": False}``.
A page from another site can neither read the cookie nor forge the HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler

from idp.web.errors import PageError
from idp.web.forms import read_form

FIELD = "csrf_token"
HEADER = "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NEW = "idp.csrf_new"


def cookie_name(secure: bool) -> str:
    """``__Host-`` prefixed over https (no subdomain can set it), plain over http."""
    return "__Host-idp_csrf" if secure else "idp_csrf"


def _secure(connection: ASGIConnection) -> bool:
    return connection.app.state.services.settings.issuer.startswith("https://")


def token_for(key: bytes, presession: str) -> str:
    """The form token for a pre-session id."""
    mac = hmac.new(key, b"csrf:" + presession.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def presession(connection: ASGIConnection) -> tuple[str, bool]:
    """This browser's pre-session id and whether it is new (its cookie must be set)."""
    state = connection.scope.setdefault("state", {})
    if _NEW in state:
        return state[_NEW], True
    value = connection.cookies.get(cookie_name(_secure(connection)))
    if value and 20 <= len(value) <= 64 and value.isascii():
        return value, False
    value = secrets.token_urlsafe(32)
    state[_NEW] = value
    return value, True


def form_token(connection: ASGIConnection) -> str:
    """The token to put in this browser's forms."""
    value, _ = presession(connection)
    return token_for(connection.app.state.csrf_key, value)


def cookie_to_set(connection: ASGIConnection) -> tuple[str, str, bool] | None:
    """(name, value, secure) of a pre-session cookie created for this response, if any."""
    value = connection.scope.get("state", {}).get(_NEW)
    if value is None:
        return None
    secure = _secure(connection)
    return cookie_name(secure), value, secure


async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Refuse an unsafe request whose token does not match its pre-session cookie."""
    if connection.scope.get("method") not in UNSAFE or handler.opt.get("csrf") is False:
        return
    cookie = connection.cookies.get(cookie_name(_secure(connection)))
    sent = connection.headers.get(HEADER)
    if sent is None:
        form = await read_form(
            Request(connection.scope, connection.receive)  # shares the cached body
        )
        sent = form.get(FIELD)
    if not cookie or not sent:
        raise PageError(403, "error.csrf")
    expected = token_for(connection.app.state.csrf_key, cookie)
    if not hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace")):
        raise PageError(403, "error.csrf")
