"""The provider: authlib's AuthorizationServer wired to our clients, keys and storage.

Built once per process. Framework-free: it takes :class:`ProtocolRequest`s
(idp/oidc/requests.py) and answers :class:`ProtocolResponse`s, which the web
layer (idp/web/protocol/adapter.py) turns into HTTP responses; the addresses of
the pages it sends a citizen to are the web layer's, given when it is built.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from authlib.oauth2 import rfc6749
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from idp.assurance import Policy
from idp.assurance.verified_claims import (
    acr_allows_identity,
    current_identity,
    identity_claims,
    needs_identity,
)
from idp.clock import Clock
from idp.db import client_assertions
from idp.db.engine import Database
from idp.db.models import Account
from idp.db.refresh_tokens import RefreshRotation
from idp.keys.store import KeyStore
from idp.oidc import claims as claims_module
from idp.oidc import grants, tokens
from idp.oidc.clients import ClientRegistry, RegisteredClient
from idp.oidc.end_session import EndSession
from idp.oidc.errors import InvalidClient
from idp.oidc.interaction import InteractionPages
from idp.oidc.introspection import Introspection
from idp.oidc.requests import ProtocolRequest, ProtocolResponse
from idp.oidc.revocation import Revocation
from idp.settings import Settings

JWKS_CACHE_SECONDS = 300


class RemoteKeySets:
    """Clients' ``jwks_uri`` key sets, fetched on demand and cached for a few minutes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> KeySet:
        with self._lock:
            cached = self._cache.get(uri)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = httpx.get(uri, timeout=5, follow_redirects=False)
            response.raise_for_status()
            keyset = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidClient(description="The client's jwks_uri cannot be read.") from exc
        with self._lock:
            self._cache[uri] = (time.monotonic() + JWKS_CACHE_SECONDS, keyset)
        return keyset


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (OIDC Core 9, RFC 7523) with jti replay check.

    An assertion may live at most ``max_seconds`` from now (IDP_CLIENT_ASSERTION_MAX_SECONDS):
    RFC 7523 3 lets the server refuse an ``exp`` unreasonably far in the future, and its
    ``jti`` is kept until it expires.
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, issuer: str, remote: RemoteKeySets, max_seconds: int, clock: Clock) -> None:
        # The jti is checked below, where the request's unit of work is at hand.
        super().__init__(validate_jti=False)
        self.audiences = [issuer, f"{issuer}/token", f"{issuer}/introspect", f"{issuer}/revoke"]
        self.remote = remote
        self.max_seconds = max_seconds
        self.clock = clock

    def verify_claims(self, claims: Any) -> None:
        super().verify_claims(claims)
        exp = claims["exp"]
        if not isinstance(exp, int) or exp - tokens.timestamp(self.clock.now()) > self.max_seconds:
            raise InvalidClient(
                description=f"The client assertion's lifetime exceeds {self.max_seconds} seconds."
            )

    def get_audiences(self) -> list[str]:
        return self.audiences

    def resolve_client_public_key(self, client: RegisteredClient) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(client.jwks)
        if client.jwks_uri:
            return self.remote.get(client.jwks_uri)
        raise InvalidClient(description="The client has no registered keys.")

    def __call__(self, query_client: Any, request: ProtocolRequest) -> RegisteredClient | None:
        client = super().__call__(query_client, request)
        if client is None:
            return None
        _, claims = self.extract_assertion(request.form["client_assertion"])
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            raise InvalidClient(description="The client assertion needs a 'jti'.")
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        if not client_assertions.first_use(request.uow, client.client_id, jti, expires):
            raise InvalidClient(description="The client assertion was used before.")
        return client


class Provider(rfc6749.AuthorizationServer):
    """authlib's server with our grants, endpoints and client registry."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        clients: ClientRegistry,
        assurance_policy: Policy,
        pairwise_key: bytes,
        database: Database,
        successor_key: bytes,
        pages: InteractionPages,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.keys = keys
        self.clients = clients
        self.assurance_policy = assurance_policy
        self.pairwise_key = pairwise_key
        self.database = database
        self.pages = pages
        self.clock = database.clock
        self.tokens = tokens.TokenService(settings, keys, database.clock)
        self.refresh_rotation = RefreshRotation(database)
        # A refresh token's successor is derived under this key (tokens.successor_of); a
        # retry within the grace period is answered with it again.
        self.successor_key = successor_key
        self.refresh_reuse_grace = timedelta(seconds=settings.refresh_reuse_grace_seconds)
        self.register_grant(grants.AuthorizationCodeGrant, [grants.PKCE(), grants.OpenIDCode()])
        self.register_grant(grants.RefreshTokenGrant)
        self.register_grant(grants.ClientCredentialsGrant)
        self.register_client_auth_method(
            "private_key_jwt",
            PrivateKeyJwt(
                settings.issuer,
                RemoteKeySets(),
                settings.client_assertion_max_seconds,
                database.clock,
            ),
        )
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_endpoint(EndSession)

    # -- authlib's integration points --------------------------------------------------------

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self.clients.get(client_id)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signals are not used: events are audited where they happen."""

    def create_oauth2_request(self, request: ProtocolRequest) -> ProtocolRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> ProtocolResponse:
        return ProtocolResponse(status, body, list(headers))

    # -- tokens ------------------------------------------------------------------------------

    def subject(self, account: Account, client: RegisteredClient) -> str:
        """The ``sub`` of ``account`` as ``client`` sees it."""
        return claims_module.subject(account, client, self.pairwise_key)

    def offers_refresh(self, client: RegisteredClient, scope: str) -> bool:
        """Whether tokens for ``scope`` come with a refresh token (``offline_access``)."""
        return "offline_access" in scope.split() and client.check_grant_type("refresh_token")

    def token_response(
        self,
        request: ProtocolRequest,
        grant: Any,
        user: grants.Authenticated,
        scope: str,
        refresh_token: str | None,
    ) -> dict[str, Any]:
        """Access token (and the refresh token issued with it) for a login's grant."""
        client: RegisteredClient = request.client
        access_token, lifetime = self.tokens.access_token(
            client.client_id, self.subject(user.account, client), scope, grant=grant
        )
        token: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if refresh_token:
            token["refresh_token"] = refresh_token
        return token

    def id_token(
        self,
        client: RegisteredClient,
        user: grants.Authenticated,
        *,
        nonce: str | None,
        sid: str | None,
        access_token: str | None,
        requested: dict[str, Any] | None,
        scope: str,
        uow: Session,
    ) -> str:
        """The ID token for ``user`` and ``client``, with claims requested for it."""
        extra = claims_module.release(user.account, scope, by_scope=False, requested=requested)
        scopes = scope.split()
        if needs_identity(scopes, requested, target="id_token") and acr_allows_identity(
            user.acr, self.settings.identity_minimum_acr
        ):
            identity = current_identity(uow, user.account.id)
            extra.update(identity_claims(identity, scopes, requested, target="id_token"))
        return self.tokens.id_token(
            client,
            self.subject(user.account, client),
            auth_time=user.auth_time,
            nonce=nonce,
            acr=user.acr,
            amr=user.amr,
            sid=sid,
            access_token=access_token,
            extra=extra,
        )
