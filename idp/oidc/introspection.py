"""Token introspection (RFC 7662): a confidential client asks whether its token is active."""

from __future__ import annotations

from functools import partial
from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from idp.db.models import Account
from idp.oidc import tokens
from idp.oidc.clients import RegisteredClient
from idp.oidc.requests import Awaiting, ProtocolRequest

BEARER = {"token_type": "Bearer"}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class Introspection(IntrospectionEndpoint):
    """authlib's introspection endpoint: a client may introspect only its own tokens."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_token(
        self, request: ProtocolRequest, client: RegisteredClient
    ) -> tokens.PresentedToken | None:
        # authlib's version, with the request's unit of work (endpoints are shared by threads).
        self.check_params(request, client)
        token = tokens.presented_token(
            request.uow, self.server.tokens, request.form["token"], client.client_id
        )
        if not token or not self.check_permission(token, client, request):
            return None
        if token.claims is not None:
            token.live = request.token_live
            if token.live is None and request.awaits:
                raise Awaiting(partial(self._read_liveness, request, token.claims))
        return token

    async def _read_liveness(self, request: ProtocolRequest, claims: dict[str, Any]) -> None:
        """Whether the access token is live, read with the round trip awaited."""
        request.token_live = await tokens.access_token_live_awaited(self.server.database, claims)

    def check_permission(
        self, token: tokens.PresentedToken, client: RegisteredClient, request: ProtocolRequest
    ) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: tokens.PresentedToken) -> dict[str, Any]:
        if token.claims is not None:
            claims = token.claims
            fields = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti")
            return {**BEARER, **{key: claims[key] for key in fields if key in claims}}
        refresh = token.refresh
        assert refresh is not None
        client = self.server.clients.get(token.client_id)
        account = token.uow.get(Account, refresh.account_id)
        payload = {
            "scope": token.scope,
            "client_id": token.client_id,
            "iss": self.server.settings.issuer,
            "iat": tokens.timestamp(refresh.created_at),
            "exp": tokens.timestamp(refresh.expires_at),
        }
        if client is not None and account is not None:
            payload["sub"] = self.server.subject(account, client)
        return payload
