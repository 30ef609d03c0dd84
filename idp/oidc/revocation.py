"""Token revocation (RFC 7009): a client revokes one of its access or refresh tokens.

Another client's token is left as it is and answered like an unknown one (200):
a different answer would tell the caller that the token is valid (RFC 7009 2.2).
"""

from __future__ import annotations

from authlib.oauth2.rfc7009 import RevocationEndpoint

from idp.audit.events import record
from idp.oidc import tokens
from idp.oidc.clients import RegisteredClient
from idp.oidc.requests import ProtocolRequest

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class Revocation(RevocationEndpoint):
    """authlib's revocation endpoint on our token storage."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_token(
        self, request: ProtocolRequest, client: RegisteredClient
    ) -> tokens.PresentedToken | None:
        # authlib's version, with the request's unit of work (endpoints are shared by threads).
        self.check_params(request, client)
        token = tokens.presented_token(
            request.uow, self.server.tokens, request.form["token"], client.client_id
        )
        if token is None or not token.check_client(client):
            return None
        return token

    def revoke_token(self, token: tokens.PresentedToken, request: ProtocolRequest) -> None:
        token.revoke()
        record(
            request.uow,
            "oidc.token_revoked",
            client_id=token.client_id,
            ip=request.ip,
            data={"type": token.type},
        )
