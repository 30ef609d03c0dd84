"""Discovery and JWKS: cached bytes served straight from memory on the event loop."""

from __future__ import annotations

from litestar import Request, Response, get

from idp.oidc.discovery import EncodedDocument

JSON = "application/json"


def _document(request: Request, document: EncodedDocument, max_age: int) -> Response[bytes]:
    headers = {
        "Cache-Control": f"public, max-age={max_age}",
        "ETag": document.etag,
        "Access-Control-Allow-Origin": "*",
    }
    if request.headers.get("if-none-match") == document.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(document.body, media_type=JSON, headers=headers)


@get(["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
async def discovery(request: Request) -> Response[bytes]:
    """OpenID Connect Discovery 1.0 and RFC 8414 server metadata."""
    return _document(request, request.app.state.services.discovery, 3600)


@get("/jwks.json")
async def jwks(request: Request) -> Response[bytes]:
    """The published public signing keys (active, next and retired)."""
    return _document(request, request.app.state.services.jwks_document(), 300)


ROUTES = [discovery, jwks]
