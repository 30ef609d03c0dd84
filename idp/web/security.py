"""Security headers on every response, set in one place.

A strict Content Security Policy (no inline script or style; scripts and
styles only from our own origin), framing forbidden, no referrer leaks,
no MIME sniffing, HSTS when the issuer is https, and ``Cache-Control:
no-store`` on anything that did not choose its own caching (pages carry
forms, CSRF tokens and personal data). A handler that sets one of these
headers itself keeps its value.

``form-action`` is deliberately absent: browsers apply it to the redirect
that follows a form post, and the consent form must be able to redirect to
a client's registered redirect URI.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from litestar.types import Message, Scope

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def headers_hook(issuer: str) -> Callable[[Message, Scope], Coroutine[Any, Any, None]]:
    """A ``before_send`` hook adding the security headers for ``issuer``."""
    defaults = {
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cross-origin-opener-policy": "same-origin",
        "cache-control": "no-store",
    }
    if issuer.startswith("https://"):
        defaults["strict-transport-security"] = "max-age=31536000; includeSubDomains"

    # Encoded once: this runs for every response.
    encoded = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in defaults.items()
    ]

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = list(message.get("headers", ()))
        present = {name.lower() for name, _ in headers}
        headers.extend(pair for pair in encoded if pair[0] not in present)
        message["headers"] = headers

    return add_headers
