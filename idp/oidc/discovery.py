"""Provider metadata (OpenID Connect Discovery 1.0, RFC 8414).

It advertises only what the service implements: the acr values the assurance
policy can assert (and their aliases), and the Identity Assurance fields from
idp/assurance/verified_claims.py. It is built once at start-up and served as
pre-encoded bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from idp.assurance import Policy, verified_claims
from idp.keys.store import ALGORITHMS
from idp.oidc.claims import CLAIMS_SUPPORTED
from idp.oidc.clients import AUTH_METHODS, GRANT_TYPES, SCOPES, SUBJECT_TYPES
from idp.settings import Settings


def provider_metadata(settings: Settings, assurance_policy: Policy) -> dict[str, Any]:
    """The metadata document for ``settings``' issuer and the configured acr policy."""
    issuer = settings.issuer
    auth_methods = list(AUTH_METHODS)
    confidential = [m for m in AUTH_METHODS if m != "none"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/end-session",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": list(SUBJECT_TYPES),
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": confidential,
        "introspection_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "create"],
        "acr_values_supported": assurance_policy.acr_values_supported(),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "ui_locales_supported": ["de", "en"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        **verified_claims.provider_metadata(),
    }


class EncodedDocument:
    """A JSON document encoded once, with an ETag for conditional requests."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.body = json.dumps(document, separators=(",", ":")).encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'
        self._headers: dict[int, list[tuple[bytes, bytes]]] = {}

    def headers(self, max_age: int) -> list[tuple[bytes, bytes]]:
        """Response headers (ASGI), encoded once per ``max_age``; content type first."""
        headers = self._headers.get(max_age)
        if headers is None:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
                (b"cache-control", f"public, max-age={max_age}".encode()),
                (b"etag", self.etag.encode()),
                (b"access-control-allow-origin", b"*"),
            ]
            self._headers[max_age] = headers
        return headers
