"""authlib's grants, bound to our storage: authorization code, refresh token, client credentials.

authlib validates the protocol (client authentication, redirect URI binding,
PKCE, scopes, error codes); these subclasses fill its hooks: where codes,
grants and refresh tokens live, how tokens look (``issue``), and the ID token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode as _OpenIDCode
from authlib.oidc.core.grants.util import is_openid_scope

from idp import clock
from idp.audit.events import record
from idp.db import codes
from idp.db.loads import ACCOUNT
from idp.db.models import Account, AuthorizationCode, LoginSession
from idp.oidc import claims as claims_module
from idp.oidc import tokens
from idp.oidc.errors import InvalidRequest, InvalidScope
from idp.oidc.requests import Awaiting, ProtocolRequest

if TYPE_CHECKING:
    from idp.oidc.server import Provider

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The end user an authorization is granted for, and how they logged in this session."""

    account: Account
    login_session: LoginSession | None
    auth_time: datetime
    acr: str | None
    amr: list[str]


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A consumed authorization code as authlib's grant sees it."""

    row: AuthorizationCode
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class _Issuing:
    """What every grant here shares: tokens are made and stored by our code."""

    request: ProtocolRequest
    server: Provider

    def save_token(self, token: dict[str, Any]) -> None:
        """Rows were written while the token was made (``generate_token``); nothing is left."""


class AuthorizationCodeGrant(_Issuing, grants.AuthorizationCodeGrant):
    """Authorization code grant (RFC 6749 4.1): single-use, short-lived codes."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def generate_authorization_code(self) -> str:
        return tokens.new_id() + tokens.new_id()

    def save_authorization_code(self, code: str, request: ProtocolRequest) -> None:
        user: Authenticated = request.user
        now = clock.now(request.uow)
        data = request.payload.data
        codes.save(
            request.uow,
            tokens.digest(code),
            client_id=request.client.client_id,
            account_id=user.account.id,
            login_session_id=user.login_session.id if user.login_session else None,
            sid=user.login_session.sid if user.login_session else None,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            claims=claims_module.parse_claims_parameter(data.get("claims")),
            auth_time=user.auth_time,
            acr=user.acr,
            amr=user.amr,
            now=now,
            expires_at=now + timedelta(seconds=self.server.settings.authorization_code_seconds),
        )
        record(
            request.uow,
            "oidc.code_issued",
            account_id=user.account.id,
            client_id=request.client.client_id,
            ip=request.ip,
            data={"scope": request.scope or ""},
        )

    def query_authorization_code(self, code: str, client: Any) -> IssuedCode | None:
        """The code, consumed now; a code used before revokes what it issued (RFC 6749 4.1.2)."""
        uow = self.request.uow
        digest = tokens.digest(code)
        now = clock.now(uow)
        row = codes.consume(uow, digest, client.client_id, now)
        if row is None:
            used = codes.find(uow, digest)
            if used is None or used.client_id != client.client_id:
                return None  # unknown, or another client's (which stays usable by its own)
            record(
                uow,
                "oidc.code_replayed",
                account_id=used.account_id,
                client_id=used.client_id,
                ip=self.request.ip,
            )
            tokens.revoke_grant(uow, used.grant_id, "code_replayed")
            return None
        if row.expires_at <= now:
            return None
        return IssuedCode(row, row.code_challenge, row.code_challenge_method)

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """The code was consumed when it was queried; remember the grant it started."""
        authorization_code.row.grant_id = self.request.grant.id

    def authenticate_user(self, authorization_code: IssuedCode) -> Authenticated | None:
        row = authorization_code.row
        account = ACCOUNT.get(self.request.uow, id=row.account_id)
        if account is None or account.disabled_at is not None:
            return None
        # The exchange needs the login session's id and sid only, and the code keeps both.
        return Authenticated(account, None, row.auth_time, row.acr, list(row.amr))

    def generate_token(
        self,
        user: Authenticated | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        row = self.request.authorization_code.row
        context = tokens.GrantContext(
            account_id=row.account_id,
            login_session_id=row.login_session_id,
            sid=row.sid,
            auth_time=row.auth_time,
            acr=row.acr,
            amr=list(row.amr),
            claims=row.claims,
        )
        scope = scope or ""
        grant = tokens.start_grant(
            self.request.uow, self.server.settings, self.client.client_id, scope, context
        )
        self.request.grant = grant
        refresh_token = (
            tokens.issue_refresh_token(self.request.uow, grant)
            if include_refresh_token and self.server.offers_refresh(self.client, scope)
            else None
        )
        return self.server.token_response(self.request, grant, user, scope, refresh_token)


class PKCE(CodeChallenge):
    """PKCE (RFC 7636) with S256 only; whether it is required is checked by the endpoint."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        super().validate_code_challenge(grant, redirect_uri)
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequest("'code_challenge_method' must be S256.")


class OpenIDCode(_OpenIDCode):
    """The ID token for the code flow, signed by our key store (OIDC Core 3.1.3.3).

    Only the token side and nonce validation are hooked in: the ``prompt`` logic is
    the interaction policy's (idp/oidc/interaction.py), not authlib's.
    """

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # Nonces bind the ID token to the RP's session; codes are single use anyway.
        return False

    def process_token(self, grant: Any, response: Any) -> Any:
        _, token, _ = response
        if not is_openid_scope(token.get("scope")):
            return token
        request = grant.request
        code = request.authorization_code.row
        user: Authenticated = request.user
        provider: Provider = grant.server
        token["id_token"] = provider.id_token(
            request.client,
            user,
            nonce=code.nonce,
            sid=code.sid,
            access_token=token["access_token"],
            requested=(code.claims or {}).get("id_token"),
            scope=token.get("scope", ""),
            uow=request.uow,
        )
        return token


class RefreshTokenGrant(_Issuing, grants.RefreshTokenGrant):
    """Refresh with rotation; a reused refresh token revokes its family (RFC 9700 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> tokens.Refreshed:
        """Rotate now: the old token consumed, its successor stored, in one step; the new
        tokens' acr is what the grant's login session has now (tokens.with_current_acr).

        Where the endpoint awaits round trips (PostgreSQL, on the event loop), the first
        pass stops here (:class:`Awaiting`) and the second finds the rotation done.
        Either way it happens only after the client authenticated.
        """
        request = self.request
        pending = request.rotation
        if pending is None:
            scope = request.payload.scope
            # Without a narrowing the scope is the grant's, which has offline_access: a
            # refresh token is only ever issued for such a grant (Provider.offers_refresh).
            successor = self.server.offers_refresh(request.client, scope) if scope else True
            pending = request.rotation = tokens.pending_rotation(
                refresh_token,
                request.client.client_id,
                scope,
                successor=successor,
                key=self.server.successor_key,
                now=self.server.clock.now(),
            )
            if request.awaits:
                raise Awaiting(partial(self.server.refresh_rotation.rotate_awaited, pending))
        refreshed = tokens.rotate_refresh_token(
            request.uow, self.server.refresh_rotation, pending, self.server.refresh_reuse_grace
        )
        return tokens.with_current_acr(
            refreshed, self.server.assurance_policy, self.server.settings, pending.now
        )

    def authenticate_user(self, refresh_token: tokens.Refreshed) -> Authenticated:
        """The rotation only matched a live grant of an account that is not disabled."""
        grant = refresh_token.grant
        self.request.grant = grant
        return Authenticated(refresh_token.account, None, grant.auth_time, grant.acr, grant.amr)

    def revoke_old_credential(self, refresh_token: tokens.Refreshed) -> None:
        """The old token was consumed atomically when it was authenticated."""

    def generate_token(
        self,
        user: Authenticated | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        refreshed: tokens.Refreshed = self.request.refresh_token
        return self.server.token_response(
            self.request, refreshed.grant, user, scope or "", refreshed.refresh_token
        )


class ClientCredentialsGrant(_Issuing, grants.ClientCredentialsGrant):
    """Client credentials (RFC 6749 4.4): one signature, no database write."""

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        requested = set((self.request.payload.scope or "").split())
        if not requested <= self.client.scopes - {"openid", "offline_access"}:
            raise InvalidScope()

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        client_id = self.client.client_id
        access_token, lifetime = self.server.tokens.access_token(client_id, client_id, scope or "")
        token = {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}
        if scope:
            token["scope"] = scope
        return token
