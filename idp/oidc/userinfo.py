"""The UserInfo endpoint (OIDC Core 5.3): claims about the account behind an access token.

The bearer token comes in the Authorization header or, for POST, in the form
body (RFC 6750 2.1, 2.2), never both. Claims follow the token's scopes and the
``claims`` request parameter's ``userinfo`` member; ``acr``, ``amr`` and
``auth_time`` of the login come from the access token itself, and verified
identity data only to a token whose ``acr`` reaches ``IDP_IDENTITY_MINIMUM_ACR``.
"""

from __future__ import annotations

from typing import Any

from idp.assurance.verified_claims import (
    IDENTITY_SCOPE,
    acr_allows_identity,
    current_identity,
    identity_claims,
)
from idp.db import access_tokens
from idp.db.engine import Database
from idp.oidc import claims as claims_module
from idp.oidc.errors import InvalidRequest, InvalidToken, OAuth2Error
from idp.oidc.requests import ProtocolResponse
from idp.oidc.server import Provider

CORS = ("Access-Control-Allow-Origin", "*")
# The login's assurance, carried by the access token (idp/oidc/tokens.py).
AUTHENTICATION_CLAIMS = ("acr", "amr", "auth_time")


def bearer_token(authorization: str | None, form: dict[str, str]) -> str | None:
    """The access token from the header or the form body; InvalidRequest if in both."""
    from_header = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidToken("The Authorization header must be 'Bearer <token>'.")
        from_header = value.strip()
    from_body = form.get("access_token")
    if from_header and from_body:
        raise InvalidRequest("Send the access token in the header or the body, not both.")
    return from_header or from_body


def challenge(error: OAuth2Error | None) -> ProtocolResponse:
    """A 401/400 with the WWW-Authenticate challenge of RFC 6750 3."""
    if error is None:
        return ProtocolResponse(401, {}, [("WWW-Authenticate", "Bearer"), CORS])
    header = f'Bearer error="{error.error}"'
    if error.description:
        header += f', error_description="{error.description}"'
    body = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    status = 400 if isinstance(error, InvalidRequest) else 401
    return ProtocolResponse(status, body, [("WWW-Authenticate", header), CORS])


async def userinfo(
    provider: Provider, db: Database, authorization: str | None, form: dict[str, str]
) -> ProtocolResponse:
    """Answer a UserInfo request. It only reads, outside a transaction (as committed);
    on PostgreSQL its one round trip is awaited."""
    try:
        token = bearer_token(authorization, form)
        if not token:
            return challenge(None)
        return ProtocolResponse(200, await _claims(provider, db, token), [CORS])
    except OAuth2Error as error:
        return challenge(error)


async def _claims(provider: Provider, db: Database, token: str) -> dict[str, Any]:
    claims = provider.tokens.verify_access_token(token)
    if claims is None:
        raise InvalidToken("The access token is invalid or expired.")
    scope = str(claims.get("scope", ""))
    if "openid" not in scope.split() or "grant_id" not in claims:
        raise InvalidToken("The access token was not issued for OpenID Connect.")
    client = provider.clients.get(claims.get("client_id"))
    found = await access_tokens.live_grant_awaited(db, claims["grant_id"], claims["jti"])
    if found is None or client is None:
        raise InvalidToken("The access token was revoked.")
    requested = (found.claims or {}).get("userinfo")
    account = found.account
    released = claims_module.release(account, scope, by_scope=True, requested=requested)
    if IDENTITY_SCOPE in scope.split() and acr_allows_identity(
        claims.get("acr"), provider.settings.identity_minimum_acr
    ):
        # Verified identity data overrides self-asserted names.
        with db.read_session() as session:
            identity = current_identity(session, account.id)
        released.update(identity_claims(identity, scope.split(), requested, target="userinfo"))
    authentication = {name: claims[name] for name in AUTHENTICATION_CLAIMS if name in claims}
    return {"sub": provider.subject(account, client), **authentication, **released}
