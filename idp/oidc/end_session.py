"""RP-Initiated Logout 1.0 on authlib's end-session endpoint, with back-channel logout.

``id_token_hint`` must be an ID token this service issued (expired ones are
accepted, as the spec asks); ``post_logout_redirect_uri`` is followed only
when it is registered for the client the hint names, with ``state`` appended.
Without a hint the citizen confirms the logout first (spec section 6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest

from idp.accounts.sessions import end_session
from idp.audit.events import record
from idp.db.models import Account
from idp.keys.store import ALGORITHMS
from idp.oidc.errors import InvalidRequest
from idp.oidc.requests import ProtocolRequest

if TYPE_CHECKING:
    from idp.oidc.server import Provider


class EndSession(EndSessionEndpoint):
    """authlib's end-session endpoint; ending the session is ours."""

    server: Provider

    def get_server_jwks(self) -> dict[str, Any]:
        return self.server.keys.jwks

    def get_algorithms(self) -> list[str]:
        return list(ALGORITHMS)

    def validate_request(self, request: ProtocolRequest) -> EndSessionRequest:
        error = request.parameter_error()
        if error is not None:
            raise error
        hint = request.payload.data.get("id_token_hint")
        # Access and logout tokens carry our signature too: only an ID token is a hint.
        if hint and self.server.tokens.verify(hint, "JWT", allow_expired=True) is None:
            raise InvalidRequest("The 'id_token_hint' is not an ID token issued here.")
        return super().validate_request(request)

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        request: ProtocolRequest = end_session_request.request
        login_session = request.login_session
        if login_session is None or login_session.ended_at is not None:
            return
        hint = end_session_request.id_token_claims
        if hint is not None and not self._same_user(request, login_session, hint):
            return
        # Ending it tells the session's clients too (idp/oidc/backchannel.py).
        end_session(request.uow, login_session, "logout")
        record(
            request.uow,
            "oidc.logout",
            account_id=login_session.account_id,
            client_id=end_session_request.client.client_id if end_session_request.client else None,
            ip=request.ip,
            data={"sid": login_session.sid},
        )
        request.session_ended = True

    def _same_user(self, request: ProtocolRequest, login_session: Any, hint: dict) -> bool:
        """Whether the hint names the session's user (its sid, or its sub for that client)."""
        if hint.get("sid") == login_session.sid:
            return True
        aud = hint.get("aud")
        client = self.server.clients.get(aud if isinstance(aud, str) else None)
        account = request.uow.get(Account, login_session.account_id)
        if client is None or account is None:
            return False
        return hint.get("sub") == self.server.subject(account, client)
