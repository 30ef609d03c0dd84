"""The UserInfo endpoint (OIDC Core 5.3): claims about the account behind an access token.

The bearer token comes in the Authorization header or, for POST, in the form
body (RFC 6750 2.1, 2.2), never both. Claims follow the token's scopes and the
``claims`` request parameter's ``userinfo`` member; ``acr``, ``amr`` and
``auth_time`` of the login come from the access token itself, and verified
identity data only to a token whose ``acr`` reaches ``IDP_IDENTITY_MINIMUM_ACR``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, exists, select

from idp.assurance.verified_claims import (
    IDENTITY_SCOPE,
    acr_allows_identity,
    current_identity,
    identity_claims,
)
from idp.db.engine import Database, Prebuilt, read_row_awaited
from idp.db.models import Account, Grant, RevokedAccessToken
from idp.oidc import claims as claims_module
from idp.oidc.errors import InvalidRequest, InvalidToken, OAuth2Error
from idp.oidc.requests import ProtocolResponse
from idp.oidc.server import Provider

CORS = ("Access-Control-Allow-Origin", "*")
# The login's assurance, carried by the access token (idp/oidc/tokens.py).
AUTHENTICATION_CLAIMS = ("acr", "amr", "auth_time")
# One round trip: the live grant, its account, and that the token itself is not revoked.
# Built once: SQLAlchemy spends more building a statement than the database running it.
# Core columns, not the ORM entity: no identity map, and only what the claims need.
_GRANT, _ACCOUNT, _REVOKED = Grant.__table__, Account.__table__, RevokedAccessToken.__table__
_ACCOUNT_COLUMNS = (
    "id",
    "subject",
    "email",
    "email_verified_at",
    "locale",
    "given_name",
    "family_name",
    "updated_at",
)
_LIVE_GRANT_AND_ACCOUNT = Prebuilt(
    select(_GRANT.c.claims, *(_ACCOUNT.c[name] for name in _ACCOUNT_COLUMNS))
    .select_from(_GRANT.join(_ACCOUNT, _ACCOUNT.c.id == _GRANT.c.account_id))
    .where(
        _GRANT.c.id == bindparam("grant_id"),
        _GRANT.c.revoked_at.is_(None),
        _ACCOUNT.c.disabled_at.is_(None),
        ~exists().where(_REVOKED.c.jti == bindparam("jti")),
    )
)


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
    found = await read_row_awaited(
        db, _LIVE_GRANT_AND_ACCOUNT, {"grant_id": claims["grant_id"], "jti": claims["jti"]}
    )
    if found is None or client is None:
        raise InvalidToken("The access token was revoked.")
    requested = (found[0] or {}).get("userinfo")
    account = Account(**dict(zip(_ACCOUNT_COLUMNS, found[1:], strict=True)))
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
