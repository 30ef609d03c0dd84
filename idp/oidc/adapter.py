"""The one place litestar meets authlib: requests in, responses out.

A litestar ``Request`` becomes an authlib :class:`ProtocolRequest` (an
``OAuth2Request`` whose form was read once, asynchronously, by the handler),
and authlib's ``(status, body, headers)`` becomes a litestar ``Response``.
The request also carries the unit of work of this HTTP request, so grants and
endpoints write in the request's one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from litestar import Request, Response
from litestar.datastructures import Headers
from sqlalchemy.orm import Session

from idp.db.models import Grant, LoginSession

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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
        self.grant: Grant | None = None

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
        content = json.dumps(body, separators=(",", ":")).encode()
        media_type = media_type or "application/json"
    else:
        content = body.encode() if isinstance(body, str) else (body or b"")
        media_type = media_type or "text/plain"
    return Response(content, status_code=response.status, headers=headers, media_type=media_type)
