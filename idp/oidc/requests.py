"""A protocol request and response as the provider sees them, free of any web framework.

:class:`ProtocolRequest` is authlib's ``OAuth2Request`` built from plain values:
the method, the URL, the headers (any mapping) and the parameters, read once by
the web layer (idp/web/protocol/adapter.py). It also carries the unit of work of
the HTTP request, so grants and endpoints write in the request's one transaction.
authlib's ``(status, body, headers)`` comes back as a :class:`ProtocolResponse`,
which the web layer turns into an HTTP response.

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
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from sqlalchemy.orm import Session

from idp.db.models import Grant, LoginSession
from idp.db.refresh_tokens import PendingRotation
from idp.oidc.errors import InvalidClient, InvalidRequest

if TYPE_CHECKING:
    from idp.oidc.tokens import StartedGrant


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
        headers: Mapping[str, str],
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
