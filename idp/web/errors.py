"""One error renderer: HTML pages for people, JSON for APIs and protocol endpoints.

Bad input never ends in a 500: the form parser, the CSRF guard and the
handlers raise :class:`PageError` (or litestar's HTTP exceptions) with a
status and a message key; this module turns them into a readable answer in
the page's language. A database that cannot serve now (connection lost, a
timeout, a lock not had in time) is answered 503 with ``Retry-After``, and
logged once per outage (:class:`Outage`). Anything else unexpected is logged and
answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from idp.db.timeouts import unavailable

log = logging.getLogger("idp.web")

# Paths whose clients are programs: they get JSON errors.
JSON_PREFIXES = (
    "/api/",
    "/.well-known/",
    "/jwks.json",
    "/token",
    "/par",
    "/introspect",
    "/revoke",
    "/userinfo",
    "/healthz",
    "/readyz",
    "/metrics",
)

ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    # RFC 6749 4.1.2.1's code for a server that cannot serve for now.
    503: "temporarily_unavailable",
}

# What a client is told to wait before trying again while the database is unavailable.
RETRY_AFTER_SECONDS = 5


class PageError(Exception):
    """A request that cannot be served as asked: a status and a catalog message key."""

    def __init__(self, status: int, key: str, **params: Any) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.params = params


class TooManyRequests(PageError):
    """429: the client may try again in ``seconds`` (sent as ``Retry-After``)."""

    def __init__(self, key: str, seconds: int) -> None:
        super().__init__(429, key, seconds=seconds)
        self.retry_after = seconds


class SignInRequired(Exception):
    """A page for signed-in citizens was asked for without a live session.

    Answered with a redirect to the login page that comes back to ``return_to``
    (by default the page asked for), so account pages need no redirect code of their own.
    """

    def __init__(self, return_to: str | None = None) -> None:
        super().__init__("sign in required")
        self.return_to = return_to


def wants_json(request: Request) -> bool:
    """Programs (API, protocol endpoints, JSON-only clients) get JSON, people HTML."""
    path = request.scope.get("path", "")
    if path.startswith(JSON_PREFIXES):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _respond(request: Request, status: int, key: str, params: dict[str, Any]) -> Response:
    from idp.web import i18n
    from idp.web.rendering import render

    if wants_json(request):
        return Response(
            {
                "error": ERROR_CODES.get(status, "server_error" if status >= 500 else "error"),
                "error_description": i18n.translate("en", key, **params),
            },
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )
    return render(
        request,
        "error.html",
        {"status": status, "message_key": key, "message_params": params},
        status=status,
    )


def _status_key(status: int) -> str:
    if status in ERROR_CODES:
        return f"error.{status}"
    return "error.500" if status >= 500 else "error.400"


def page_error(request: Request, exc: PageError) -> Response:
    response = _respond(request, exc.status, exc.key, exc.params)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
        response.headers["Cache-Control"] = "no-store"
    return response


def sign_in_required(request: Request, exc: SignInRequired) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect("/login?" + urlencode({"return_to": exc.return_to or here}), status_code=303)


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        log.error("internal error on %s: %s", request.scope.get("path"), exc.detail)
    response = _respond(request, status, _status_key(status), {})
    if exc.headers:
        response.headers.update(exc.headers)
    return response


class Outage:
    """The database outage an app (``app.state.outage``) answers 503 for, logged once: when
    its first request is refused, and when it ends (``/readyz`` reached the database again,
    or no request was refused for ``QUIET_SECONDS``) with how many were."""

    QUIET_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self._last = 0.0
        self._refused = 0

    def refused(self, path: str, exc: Exception) -> None:
        """A request was answered 503 because of ``exc``."""
        with self._lock:
            now = time.monotonic()
            if self._started is not None and now - self._last > self.QUIET_SECONDS:
                self._end()
            if self._started is None:
                self._started = now
                self._refused = 0
                log.warning(
                    "database unavailable, answering 503 until it is back (first on %s): %s",
                    path,
                    exc,
                )
            self._refused += 1
            self._last = now

    def recovered(self) -> None:
        """The database served again: the outage, if any, is over."""
        if self._started is None:  # the common case, without the lock
            return
        with self._lock:
            if self._started is not None:
                self._end()

    def _end(self) -> None:
        log.warning(
            "database available again: %d requests answered 503 over %.1f s",
            self._refused,
            self._last - self._started,
        )
        self._started = None


def database_unavailable(request: Request, exc: Exception) -> Response:
    """503 with ``Retry-After``: JSON ``temporarily_unavailable`` for programs, a page
    asking people to try again shortly."""
    request.app.state.outage.refused(request.scope.get("path", ""), exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    try:
        response = _respond(request, 503, "error.503", {})
    except Exception:
        log.exception("rendering the error page failed")
        response = Response(
            "Service unavailable, please try again shortly.\n",
            status_code=503,
            media_type="text/plain; charset=utf-8",
        )
    response.headers.update(headers)
    return response


def unexpected_error(request: Request, exc: Exception) -> Response:
    if unavailable(exc):
        return database_unavailable(request, exc)
    log.exception("unexpected error on %s", request.scope.get("path"))
    try:
        return _respond(request, 500, "error.500", {})
    except Exception:
        log.exception("rendering the error page failed")
        return Response(
            "Internal server error", status_code=500, media_type="text/plain; charset=utf-8"
        )


HANDLERS: dict[type[Exception] | int, Any] = {
    PageError: page_error,
    SignInRequired: sign_in_required,
    HTTPException: http_error,
    Exception: unexpected_error,
}
