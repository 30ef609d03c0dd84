"""CSRF protection for every form: a signed double-submit token.

A browser gets a random pre-session id in a cookie (``__Host-idp_csrf`` over
https) the first time a page is rendered for it. Forms carry
``csrf_token = HMAC(key, pre-session id)``. One guard, installed on the whole
application, checks every unsafe request (POST, PUT, PATCH, DELETE) against
the cookie; handlers that must accept cross-site requests by design (protocol
endpoints authenticated otherwise) opt out with ``opt={"csrf": False}``.
A page from another site can neither read the cookie nor forge the HMAC.

Opening a login session rotates the pre-session id (:func:`rotate`): a token
learnt before the login (a form shown to whoever used the browser before, or
planted) no longer matches, and forms still open in other tabs are refused
with the readable "form expired" page (403), to be reloaded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from litestar import Response
from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler

from idp.web.cookies import set_cookie
from idp.web.errors import PageError
from idp.web.forms import read_form

FIELD = "csrf_token"
HEADER = "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NEW = "idp.csrf_new"
_ROTATED = "idp.csrf_rotated"


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


def rotate(connection: ASGIConnection) -> None:
    """Give this browser a new pre-session id from this response on (a session was opened);
    once per request: forms rendered after it in the same request carry the new token."""
    state = connection.scope.setdefault("state", {})
    if not state.get(_ROTATED):
        state[_NEW] = secrets.token_urlsafe(32)
        state[_ROTATED] = True


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


def write_cookie(connection: ASGIConnection, response: Response) -> None:
    """Set the pre-session cookie on ``response`` if this request created or rotated it."""
    new_cookie = cookie_to_set(connection)
    if new_cookie is not None:
        name, value, secure = new_cookie
        set_cookie(response, name, value, path="/", secure=secure, httponly=True, samesite="lax")


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
