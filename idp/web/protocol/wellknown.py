"""Discovery and JWKS: cached bytes served straight from memory on the event loop.

Raw ASGI handlers: the body, its ETag and the response headers are encoded once
per document, so a request costs routing and two ``send`` calls, not a litestar
``Response`` built per request.
The security headers are added by the app's ``before_send`` hook as for any
response; CORS is open (public metadata).
"""

from __future__ import annotations

from litestar.types import Receive, Scope, Send

from idp.keys.store import JWKS_MAX_AGE
from idp.oidc.discovery import EncodedDocument
from idp.web.handlers import asgi

DISCOVERY_MAX_AGE = 3600
ALLOWED = [(b"allow", b"GET")]
PUBLIC = {"csrf": False}  # read-only documents: no form, no CSRF check


async def _send_document(scope: Scope, send: Send, document: EncodedDocument, max_age: int) -> None:
    if scope["method"] != "GET":
        await send({"type": "http.response.start", "status": 405, "headers": ALLOWED})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = document.headers(max_age)
    etag = document.etag.encode()
    if any(name == b"if-none-match" and value == etag for name, value in scope["headers"]):
        await send({"type": "http.response.start", "status": 304, "headers": headers[1:]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": document.body})


@asgi(
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"],
    copy_scope=False,  # the handler reads the scope, changes nothing
    opt=PUBLIC,
)
async def discovery(scope: Scope, receive: Receive, send: Send) -> None:
    """OpenID Connect Discovery 1.0 and RFC 8414 server metadata."""
    document = scope["app"].state.services.discovery
    await _send_document(scope, send, document, DISCOVERY_MAX_AGE)


@asgi("/jwks.json", copy_scope=False, opt=PUBLIC)
async def jwks(scope: Scope, receive: Receive, send: Send) -> None:
    """The published public signing keys (active, next and retired)."""
    document = scope["app"].state.services.jwks_document()
    await _send_document(scope, send, document, JWKS_MAX_AGE)


ROUTES = [discovery, jwks]
