"""The one place litestar meets the protocol core (idp/oidc): requests in, responses out.

A litestar ``Request`` becomes a :class:`~idp.oidc.requests.ProtocolRequest` (its
parameters read once, asynchronously, by the handler), and a
:class:`~idp.oidc.requests.ProtocolResponse` becomes a litestar ``Response``. The
addresses of the pages the protocol core sends a citizen to (login, step-up,
consent...) are given to it from here too (:data:`PAGES`).

The endpoints for programs (token, userinfo, introspection, revocation) are
called far more often than the pages and do one small thing each, so they
take the ASGI level directly: the parameters come from the scope and the
body (:func:`read_program_params`), the answer goes out as two ASGI messages
(:func:`send_response`). Limits, parsing and error answers are litestar's own
(the same size limit, the same form decoding, the same exceptions rendered
by the one error handler); what is skipped is the per-request machinery
these handlers do not use (signature parsing, dependency injection,
response objects).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Response
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive, Scope, Send
from sqlalchemy.orm import Session

from idp.db.models import LoginSession
from idp.oidc.interaction import InteractionPages
from idp.oidc.requests import ProtocolRequest, ProtocolResponse

FORM = "application/x-www-form-urlencoded"

# Where the authorization endpoint sends a citizen who must do something first: the
# routes of idp/web/citizen/, idp/web/account/ and idp/web/protocol/authorize.py.
PAGES = InteractionPages(
    login="/login",
    register="/register",
    step_up="/step-up",
    consent="/consent",
    resume="/authorize/resume/{flow_id}",
)

# Compact JSON (UTF-8), as json.dumps with tight separators gives it, several times faster.
_json = msgspec.json.Encoder().encode


async def read_params(request: Request) -> list[tuple[str, str]]:
    """The request's parameters: the query for GET, the form body for POST (read once)."""
    if request.method == "GET":
        return list(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return []
    form = await request.form()
    return [(key, value) for key, value in form.multi_items() if isinstance(value, str)]


def protocol_request(
    request: Request,
    params: Iterable[tuple[str, str]],
    uow: Session | None = None,
    login_session: LoginSession | None = None,
) -> ProtocolRequest:
    """An authlib request for this litestar request, its parameters and its unit of work."""
    return ProtocolRequest(
        request.method,
        str(request.url),
        params,
        request.headers,
        uow,
        ip=request.client.host if request.client else None,
        login_session=login_session,
    )


def to_response(response: ProtocolResponse) -> Response[bytes]:
    """A protocol response as a litestar response; JSON bodies are encoded here."""
    headers = dict(response.headers)
    media_type = headers.pop("Content-Type", None)
    body = response.body
    if isinstance(body, dict | list):
        content = _json(body)
        media_type = media_type or "application/json"
    else:
        content = body.encode() if isinstance(body, str) else (body or b"")
        media_type = media_type or "text/plain"
    return Response(content, status_code=response.status, headers=headers, media_type=media_type)


# -- the endpoints for programs, at the ASGI level ---------------------------------------------


class ScopeHeaders(Mapping[str, str]):
    """Case-insensitive read access to a request's raw ASGI headers, decoded on demand.

    authlib reads one or two headers per request (``Authorization``); decoding all of
    them into litestar's ``Headers`` costs more than the lookups. Like litestar's, a
    repeated header answers with its first value.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, key: str, default: Any = None) -> Any:
        name = key.lower().encode("latin-1")
        for raw_name, value in self._raw:
            if raw_name == name:
                return value.decode("latin-1")
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.decode("latin-1") for name, _ in self._raw))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        # authlib tests ``headers or {}``: without this, truthiness would decode every name.
        return bool(self._raw)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for raw_name, value in scope["headers"]:
        if raw_name == name:
            return value
    return None


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The whole body, within the application's size limit (as litestar's ``Request.body``)."""
    limit = scope["litestar_app"].request_max_body_size or math.inf
    announced = _header(scope, b"content-length")
    if announced is not None:
        try:
            length = int(announced)
        except ValueError:
            value = announced.decode("latin-1")
            raise ClientException(f"Invalid content-length: {value!r}") from None
        if length > limit:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    received = 0
    while True:
        event = await receive()
        if event["type"] == "http.request":
            chunk = event.get("body", b"")
            if chunk:
                received += len(chunk)
                if received > limit:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not event.get("more_body", False):
                break
        elif event["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
    return b"".join(chunks)


async def read_program_params(scope: Scope, receive: Receive) -> list[tuple[str, str]]:
    """The form body of a POST (read once), decoded as litestar decodes forms; [] otherwise.

    A body of another type is not read at all, as with :func:`read_params`.
    """
    if scope["method"] != "POST":
        return []
    content_type = _header(scope, b"content-type")
    if content_type is None or not content_type.decode("latin-1").startswith(FORM):
        return []
    body = await _read_body(scope, receive)
    return parse_qsl(body.decode("latin-1"), keep_blank_values=True, separator="&")


def _url(scope: Scope) -> str:
    host = _header(scope, b"host")
    if host is not None:
        netloc = host.decode("latin-1")
    else:
        server_host, port = scope.get("server") or ("localhost", None)
        netloc = f"{server_host}:{port}" if port else server_host
    url = f"{scope['scheme']}://{netloc}{scope['root_path']}{scope['path']}"
    query = scope.get("query_string")
    return f"{url}?{query.decode('latin-1')}" if query else url


def program_request(
    scope: Scope, params: Iterable[tuple[str, str]], uow: Session | None = None
) -> ProtocolRequest:
    """An authlib request for an ASGI request to an endpoint for programs."""
    client = scope.get("client")
    return ProtocolRequest(
        scope["method"],
        _url(scope),
        params,
        ScopeHeaders(scope["headers"]),
        uow,
        ip=client[0] if client else None,
    )


def encode_body(response: ProtocolResponse) -> tuple[bytes, str]:
    """The body of a protocol response and its media type; JSON bodies are encoded here."""
    body = response.body
    if isinstance(body, dict | list):
        return _json(body), "application/json"
    content = body.encode() if isinstance(body, str) else (body or b"")
    return content, "text/plain; charset=utf-8"


async def send_response(send: Send, response: ProtocolResponse) -> None:
    """Send a protocol response with the headers :func:`to_response` would give it.

    The security headers (idp/web/security.py) are added on the way out, as for
    every response.
    """
    content, media_type = encode_body(response)
    headers = []
    for name, value in response.headers:
        if name.lower() == "content-type":
            media_type = value
        else:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    headers.append((b"content-type", media_type.encode("latin-1")))
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})
