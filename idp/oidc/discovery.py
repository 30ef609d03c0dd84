"""Provider metadata (OpenID Connect Discovery 1.0, RFC 8414).

It advertises only what the service implements; it is built once at start-up
and served as pre-encoded bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from idp.keys.store import ALGORITHMS
from idp.settings import Settings


def provider_metadata(settings: Settings) -> dict[str, Any]:
    """The metadata document for ``settings``' issuer."""
    issuer = settings.issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks.json",
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
    }


class EncodedDocument:
    """A JSON document encoded once, with an ETag for conditional requests."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.body = json.dumps(document, separators=(",", ":")).encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'
