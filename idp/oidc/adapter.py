"""The one place litestar meets authlib: requests in, responses out.

A litestar ``Request`` becomes an authlib :class:`ProtocolRequest` (an
``OAuth2Request`` whose form was read once, asynchronously, by the handler),
and authlib's ``(status, body, headers)`` becomes a litestar ``Response``.
The request also carries the unit of work of this HTTP request, so grants and
endpoints write in the request's one transaction.

The endpoints for programs (token, userinfo, introspection, revocation) are
called far more often than the pages and do one small thing each, so they
take the ASGI level directly: the parameters come from the scope and the
body (:func:`read_program_params`), the answer goes out as two ASGI messages
(:func:`send_response`). Limits, parsing and error answers are litestar's own
(the same size limit, the same form decoding, the same exceptions rendered
by the one error handler); what is skipped is the per-request machinery
these handlers do not use (signature parsing, dependency injection,
response objects).

Every protocol request's parameters are checked here, in one place, before
authlib or a query reads them (:func:`parameter_error`): each parameter the
specs define at most once (RFC 6749 3.1, 3.2), each of its syntax (RFC 6749
Appendix A: no quote, backslash, space or non-ASCII in a ``redirect_uri``, say,
which authlib would echo into an error description it then refuses to build),
and no value with a NUL or another control character (PostgreSQL text cannot
hold NUL). ``Authorization: Basic`` credentials must be UTF-8
(:func:`credentials_error`).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from litestar import Request, Response
from litestar.datastructures import Headers
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive, Scope, Send
from sqlalchemy.orm import Session

from idp.db.models import Grant, LoginSession
from idp.db.refresh_rotation import PendingRotation
from idp.oidc.errors import InvalidClient, InvalidRequest

if TYPE_CHECKING:
    from idp.oidc.tokens import StartedGrant

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"


@dataclass
class ProtocolResponse:
    """authlib's (status, body, headers), before it becomes an HTTP response."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)


class Payload(OAuth2Payload):
    """Request parameters with every value kept, so repeated parameters are detected."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        datalist: dict[str, list[str]] = {}
        for key, value in items:
            datalist.setdefault(key, []).append(value)
        self._datalist = datalist
        self._data = {key: values[0] for key, values in datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:  # type: ignore[override]
        return self._datalist


# -- what every protocol request's parameters must be ------------------------------------------

# RFC 6749 Appendix A (and RFC 3986 for URIs, RFC 7636 4.1 for PKCE): the characters each
# parameter may have. Values beyond these are refused before authlib sees them.
_VSCHAR = re.compile(r"[\x20-\x7e]*")
_URI = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_NAMES = re.compile(r"[A-Za-z0-9_ ]*")  # response-type: space-separated response-names
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e ]*")  # NQCHAR tokens separated by spaces
_PKCE = re.compile(r"[A-Za-z0-9\-._~]*")
SYNTAX: dict[str, re.Pattern[str]] = {
    "client_id": _VSCHAR,
    "client_secret": _VSCHAR,
    "response_type": _NAMES,
    "redirect_uri": _URI,
    "post_logout_redirect_uri": _URI,
    "scope": _SCOPE,
    "state": _VSCHAR,
    "code": _VSCHAR,
    "grant_type": _URI,  # a name or a URI
    "refresh_token": _VSCHAR,
    "access_token": _VSCHAR,
    "token": _VSCHAR,
    "token_type_hint": _NAMES,
    "code_challenge": _PKCE,
    "code_challenge_method": _PKCE,
    "code_verifier": _PKCE,
    "client_assertion": _VSCHAR,
    "client_assertion_type": _URI,
    "id_token_hint": _VSCHAR,
}
# Every parameter our endpoints read: each may be sent only once (RFC 6749 3.1, 3.2).
# Others are ignored, as RFC 6749 3.1 asks, repeated or not.
PARAMETERS = frozenset(
    {
        *SYNTAX,
        "nonce",
        "prompt",
        "max_age",
        "ui_locales",
        "claims_locales",
        "login_hint",
        "acr_values",
        "claims",
        "response_mode",
        "display",
        "request",
        "request_uri",
        "logout_hint",
    }
)
# Any value: C0 controls but tab, line feed and carriage return (a pretty-printed
# ``claims``), DEL, C1 controls and lone surrogates (not UTF-8).
_has_control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]").search


def parameter_error(
    datalist: Mapping[str, list[str]], names: Collection[str] | None = None
) -> InvalidRequest | None:
    """Why the parameters cannot be taken as sent (``names`` only, if given), or None."""
    for name, values in datalist.items():
        if names is not None and name not in names:
            continue
        known = name in PARAMETERS
        if known and len(values) > 1:
            return InvalidRequest(f"The '{name}' parameter is included more than once.")
        syntax = SYNTAX.get(name)
        for value in values:
            if syntax is not None and not syntax.fullmatch(value):
                return InvalidRequest(f"The '{name}' parameter has characters it cannot have.")
            if _has_control(value) or _has_control(name):
                which = f"The '{name}' parameter" if known else "A parameter"
                return InvalidRequest(f"{which} contains control characters.")
    return None


def credentials_error(authorization: str | None) -> InvalidClient | None:
    """Why the ``Authorization`` header cannot be read as client credentials, or None.

    authlib reads it itself (``scheme credentials``) and answers a malformed Base64
    value; what breaks its reading (a scheme with a space and nothing after it,
    non-ASCII, Basic credentials that are not UTF-8 once decoded) is refused here.
    """
    if not authorization or " " not in authorization:
        return None  # authlib ignores it
    parts = authorization.split(None, 1)  # as authlib splits it
    if len(parts) != 2:
        return InvalidClient(description="The Authorization header is malformed.", status_code=401)
    if parts[0].lower() != "basic":
        return None
    try:
        base64.b64decode(parts[1]).decode("utf-8")
    except binascii.Error:
        return None
    except ValueError:
        return InvalidClient(description="The Basic credentials are not UTF-8.", status_code=401)
    return None


# Compact JSON (UTF-8), as json.dumps with tight separators gives it, several times faster.
_json = msgspec.json.Encoder().encode


class Awaiting(Exception):
    """Raised through authlib's synchronous flow where the request must await a round trip.

    authlib's grants and endpoints are synchronous; an endpoint on the event loop must
    not hold the loop while PostgreSQL answers (idp/db/awaited.py). Where a grant or
    endpoint reaches such a round trip on a request that ``awaits``, it raises this with
    the ``step`` to await; the endpoint awaits it and asks authlib again with the same
    request, which finds the step's result on it (idp/web/protocol.py).
    """

    def __init__(self, step: Callable[[], Awaitable[None]]) -> None:
        super().__init__("a database round trip to be awaited")
        self.step = step


class ProtocolRequest(OAuth2Request):
    """authlib's request with parameters, headers and the unit of work already at hand."""

    def __init__(
        self,
        method: str,
        uri: str,
        params: Iterable[tuple[str, str]],
        headers: Mapping[str, str] | Headers,
        uow: Session | None,
        ip: str | None = None,
        login_session: LoginSession | None = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = Payload(params)
        # None where the request needs no database (a client-credentials grant).
        self.uow: Session = uow  # type: ignore[assignment]
        self.ip = ip
        # The browser's SSO session, where the endpoint acts on it (authorize, end-session).
        self.login_session = login_session
        self.session_ended = False
        self.grant: Grant | StartedGrant | None = None
        # Whether round trips may pause the flow (Awaiting), and the results of those that
        # did: a refresh grant's rotation, an introspected access token's liveness.
        self.awaits = False
        self.rotation: PendingRotation | None = None
        self.token_live: bool | None = None

    def parameter_error(self, names: Collection[str] | None = None) -> InvalidRequest | None:
        """Why this request's parameters cannot be taken as sent (:func:`parameter_error`)."""
        return parameter_error(self.payload.datalist, names)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data


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
