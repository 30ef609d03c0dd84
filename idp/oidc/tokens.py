"""Tokens: JWT access tokens (RFC 9068), ID tokens, refresh tokens and their grants.

Access tokens are stateless ES256 JWTs (``typ: at+jwt``); nothing is written
for one. Those issued from a login carry the ``grant_id`` of the
:class:`~idp.db.models.Grant` they belong to, so revoking the grant revokes
them too; a single revoked token is remembered by ``jti`` until it expires.
Refresh tokens and codes are random and stored as SHA-256 digests; a refresh
token's successor is derived from it under a key of the service secret, so a
retried rotation can be answered with the successor it already stored (see
:func:`rotate_refresh_token` for the grace rule).

What is stored goes through idp/db's stores (grants, refresh_tokens, access_tokens).
The rule that makes a refresh token usable is the store's (idp/db/refresh_tokens.py);
a refused one is answered and logged with the reason (:data:`REFUSALS`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from authlib.oidc.core.util import create_half_hash
from sqlalchemy.orm import Session

from idp import clock
from idp.assurance.policy import Policy, refreshed_acr, session_facts
from idp.audit.events import record
from idp.clock import Clock
from idp.db import access_tokens, grants, refresh_tokens
from idp.db.engine import Database
from idp.db.models import Grant
from idp.db.refresh_tokens import PendingRotation, Presented, RefreshRotation, Rotated
from idp.keys.store import KeyStore
from idp.oidc.clients import RegisteredClient
from idp.oidc.errors import InvalidGrant, InvalidScope, OAuth2Error
from idp.settings import Settings

log = logging.getLogger("idp.oidc.tokens")

AT_JWT = "at+jwt"
# Verified tokens remembered (see TokenService.verify): about 2 KB each.
VERIFIED_CACHE_SIZE = 1024


def digest(value: str) -> bytes:
    """The stored form of a code or refresh token."""
    return hashlib.sha256(value.encode()).digest()


def new_id() -> str:
    """A cheap random identifier (jti, grant id)."""
    return secrets.token_urlsafe(16)


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


class TokenService:
    """Signs and verifies the service's own JWTs; remembers verified ones per key version."""

    def __init__(self, settings: Settings, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.keys = keys
        self.clock = clock
        self._verified: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._verified_version = -2

    # -- access tokens ---------------------------------------------------------------------

    def access_token(
        self,
        client_id: str,
        sub: str,
        scope: str,
        *,
        grant: Grant | Rotated | StartedGrant | None = None,
    ) -> tuple[str, int]:
        """A signed RFC 9068 access token and its lifetime in seconds."""
        now = timestamp(self.clock.now())
        lifetime = self.settings.access_token_seconds
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            # Without resource indicators the one resource we know is our own (userinfo).
            "aud": self.settings.issuer,
            "sub": sub,
            "client_id": client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": new_id(),
            "scope": scope,
        }
        if grant is not None:
            claims["grant_id"] = grant.id
            claims["auth_time"] = timestamp(grant.auth_time)
            if grant.acr:
                claims["acr"] = grant.acr
            if grant.amr:
                claims["amr"] = grant.amr
        token = self.keys.sign(claims, self.settings.access_token_signing_alg, AT_JWT)
        return token, lifetime

    def verify(
        self, token: str, typ: str | None = None, *, allow_expired: bool = False
    ) -> dict[str, Any] | None:
        """The claims of a JWT this service signed (and that has not expired), else None."""
        if not token or len(token) > 8192 or token.count(".") != 2:
            return None
        decoded = self._signed(token)
        if decoded is None:
            return None
        header, claims = decoded
        if typ is not None and header.get("typ") != typ:
            return None
        if claims.get("iss") != self.settings.issuer:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or (not allow_expired and exp <= timestamp(self.clock.now())):
            return None
        return dict(claims)

    def _signed(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Header and claims of a token whose signature is ours, remembered once checked.

        A resource server or RP presents the same access token many times; the signature
        check (about 50 us for ES256) is the largest part of answering it. What is
        remembered is only that this exact string carries our signature, until the keys
        change; expiry, issuer, type and revocation are checked on every use.
        """
        version = self.keys.version
        if self._verified_version != version:
            self._verified, self._verified_version = {}, version
        cache = self._verified
        decoded = cache.get(token)
        if decoded is None:
            decoded = self.keys.decode(token)
            if decoded is None:
                return None
            if self.keys.version == version:  # not when the keys were reloaded meanwhile
                if len(cache) >= VERIFIED_CACHE_SIZE:
                    cache.clear()
                cache[token] = decoded
        return decoded

    def verify_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired access token (revocation not checked)."""
        return self.verify(token, AT_JWT)

    # -- ID tokens -------------------------------------------------------------------------

    def id_token(
        self,
        client: RegisteredClient,
        sub: str,
        *,
        auth_time: datetime,
        nonce: str | None = None,
        acr: str | None = None,
        amr: list[str] | None = None,
        sid: str | None = None,
        access_token: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An ID token for ``client`` signed with its algorithm (OIDC Core 2, 3.1.3.6)."""
        now = timestamp(self.clock.now())
        alg = client.id_token_signed_response_alg
        claims: dict[str, Any] = dict(extra or {})
        claims.update(
            iss=self.settings.issuer,
            sub=sub,
            aud=client.client_id,
            exp=now + self.settings.id_token_seconds,
            iat=now,
            auth_time=timestamp(auth_time),
        )
        if nonce:
            claims["nonce"] = nonce
        if acr:
            claims["acr"] = acr
        if amr:
            claims["amr"] = amr
        if sid:
            claims["sid"] = sid
        if access_token:
            claims["at_hash"] = create_half_hash(access_token, alg).decode()
        return self.keys.sign(claims, alg)


# -- grants and refresh tokens -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrantContext:
    """What a login established, carried from the code to the grant."""

    account_id: int
    login_session_id: int | None
    sid: str | None
    auth_time: datetime
    acr: str | None
    amr: list[str]
    claims: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class StartedGrant:
    """A grant just recorded: what its first tokens need (the token response's claims,
    the refresh token's family and expiry, the code's link to it)."""

    id: str
    auth_time: datetime
    acr: str | None
    amr: list[str]
    expires_at: datetime


def start_grant(
    session: Session, settings: Settings, client_id: str, scope: str, context: GrantContext
) -> StartedGrant:
    """Record a new grant (token family) for a redeemed code."""
    now = clock.now(session)
    grant = StartedGrant(
        id=new_id(),
        auth_time=context.auth_time,
        acr=context.acr,
        amr=context.amr,
        expires_at=now + timedelta(days=settings.refresh_token_days),
    )
    grants.start(
        session,
        grant.id,
        client_id=client_id,
        account_id=context.account_id,
        login_session_id=context.login_session_id,
        sid=context.sid,
        scope=scope,
        claims=context.claims,
        auth_time=grant.auth_time,
        acr=grant.acr,
        amr=grant.amr,
        now=now,
        expires_at=grant.expires_at,
    )
    return grant


def new_refresh_token() -> tuple[str, bytes]:
    """A fresh refresh token and its stored digest."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def issue_refresh_token(session: Session, grant: StartedGrant) -> str:
    """A new refresh token in ``grant``'s family; valid until the grant expires."""
    token, token_digest = new_refresh_token()
    refresh_tokens.issue(session, token_digest, grant.id, clock.now(session), grant.expires_at)
    return token


def revoke_grant(session: Session, grant_id: str | None, reason: str) -> bool:
    """Revoke a grant and so every token of its family; True if it was live."""
    if grant_id is None:
        return False
    revoked = grants.revoke(session, grant_id, reason, clock.now(session))
    if revoked is None:
        return False
    record(
        session,
        "grant.revoked",
        account_id=revoked.account_id,
        client_id=revoked.client_id,
        data={"grant_id": grant_id, "reason": reason},
    )
    return True


@dataclass(frozen=True, slots=True)
class RefreshedAccount:
    """The grant's account, as far as its ``sub`` goes (idp.oidc.claims.subject)."""

    id: int
    subject: str


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A refresh token's grant after rotation, its account, and the successor (already stored)."""

    grant: Rotated
    account: RefreshedAccount
    refresh_token: str | None

    def check_client(self, client: Any) -> bool:
        return client.client_id == self.grant.client_id

    def get_scope(self) -> str:
        return self.grant.scope


def successor_of(token: str, key: bytes) -> str:
    """The refresh token that succeeds ``token``: derived rather than drawn, so every
    presentation of one token names the same successor. Keyed: without the service
    secret, a token (or a whole stolen chain of them) does not tell its successor.
    BLAKE2b in its keyed mode is a MAC (RFC 7693) at half the cost of HMAC-SHA256, and
    this runs on every refresh."""
    mac = hashlib.blake2b(token.encode(), key=key, digest_size=32).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def pending_rotation(
    token: str, client_id: str, scope: str | None, *, successor: bool, key: bytes, now: datetime
) -> PendingRotation:
    """A rotation of ``token`` for ``client_id`` at ``now``, its successor (derived under
    ``key``) stored only if one is due.

    ``scope`` narrows the grant's scope (RFC 6749 section 6).
    """
    derived = successor_of(token, key)
    derived_digest = digest(derived)
    return PendingRotation(
        token_digest=digest(token),
        client_id=client_id,
        scopes=scope.split() if scope else [],
        now=now,
        successor=derived if successor else None,
        successor_digest=derived_digest if successor else None,
        derived_digest=derived_digest,
    )


def rotate_refresh_token(
    uow: Session, rotation: RefreshRotation, pending: PendingRotation, grace: timedelta
) -> Refreshed:
    """Consume a refresh token and store its successor (rotation, RFC 9700 4.14.2).

    Runs the rotation unless it already ran (awaited by the endpoint). A token this
    client rotated less than ``grace`` before it was presented (a retry after a lost
    answer, or the first request landing after its retry) is answered again with the
    same successor, while that successor is unused. Otherwise a token that did not
    rotate is refused (:data:`REFUSALS`): :class:`InvalidGrant` with the reason as its
    description, or :class:`InvalidScope` for a narrowing beyond the grant. A token used
    before, and presented after the grace period, revokes its whole family; a token of
    another client is refused untouched.
    """
    if not pending.ran:
        rotation.rotate(uow, pending)
    rotated = pending.rotated
    if rotated is None:
        rotated = _retried_or_refused(uow, rotation, pending, grace)
    account = RefreshedAccount(rotated.account_id, rotated.subject)
    return Refreshed(rotated, account, pending.successor)


def with_current_acr(
    refreshed: Refreshed, policy: Policy, settings: Settings, now: datetime
) -> Refreshed:
    """The refreshed grant with the acr its new access token carries: what its login session
    has ``now`` if alive, else the grant's aged by the policy's maximum ages (never higher
    than the grant's; see :func:`idp.assurance.policy.refreshed_acr`)."""
    grant = refreshed.grant
    facts, alive = None, False
    if grant.session_methods is not None:
        facts = session_facts(grant.proofing, grant.session_methods, (), now)
        alive = (
            grant.session_ended_at is None
            and grant.session_expires_at is not None
            and grant.session_last_seen_at is not None
            and now < grant.session_expires_at
            and now - grant.session_last_seen_at < timedelta(minutes=settings.session_idle_minutes)
        )
    acr = refreshed_acr(
        grant.acr,
        facts,
        grant.auth_time,
        now,
        policy,
        session_alive=alive,
        longest=timedelta(hours=settings.session_max_hours),
    )
    if acr == grant.acr:
        return refreshed
    return dataclasses.replace(refreshed, grant=dataclasses.replace(grant, acr=acr))


# Why a refresh token is refused, beyond the rule's own conditions (idp/db/refresh_tokens.py).
UNKNOWN = "unknown"
REUSED = "reused"
ALREADY_ROTATED = "already_rotated"
CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """How one reason to refuse a refresh token is answered and logged."""

    description: str | None  # the error_description (None: the error's own)
    level: int
    note: str  # the log line
    error: type[OAuth2Error] = InvalidGrant


_NOT_KNOWN = "unknown refresh token"
REFUSALS: dict[str, Refusal] = {
    UNKNOWN: Refusal(_NOT_KNOWN, logging.INFO, "unknown refresh token"),
    # The same answer as for an unknown token: it must not tell that the token exists.
    refresh_tokens.WRONG_CLIENT: Refusal(
        _NOT_KNOWN, logging.WARNING, "refresh token of another client: left alone"
    ),
    refresh_tokens.REVOKED: Refusal(
        "refresh token revoked", logging.INFO, "refresh token of a revoked family"
    ),
    refresh_tokens.EXPIRED: Refusal("refresh token expired", logging.INFO, "refresh token expired"),
    REUSED: Refusal(
        "refresh token reused", logging.WARNING, "refresh token reused: its family is revoked"
    ),
    ALREADY_ROTATED: Refusal(
        "refresh token already rotated",
        logging.WARNING,
        "refresh token presented again after its successor was used",
    ),
    refresh_tokens.ACCOUNT_DISABLED: Refusal(
        "account disabled", logging.INFO, "refresh token of a disabled account: family revoked"
    ),
    refresh_tokens.SCOPE_BEYOND_GRANT: Refusal(
        None, logging.INFO, "refresh narrowed to scopes beyond its grant's", InvalidScope
    ),
    # Every condition holds now: the token changed while it was presented (a concurrent use).
    CHANGED: Refusal(
        "refresh token not usable", logging.INFO, "refresh token changed while presented"
    ),
}


def _refuse(reason: str, pending: PendingRotation, grant_id: str | None = None) -> NoReturn:
    """Log why the refresh token is refused and raise the error that says so."""
    refusal = REFUSALS[reason]
    facts = {"reason": reason, "client_id": pending.client_id, "grant_id": grant_id}
    log.log(refusal.level, refusal.note, extra=facts)
    if refusal.description is None:
        raise refusal.error()
    raise refusal.error(description=refusal.description)


def _retried_or_refused(
    uow: Session, rotation: RefreshRotation, pending: PendingRotation, grace: timedelta
) -> Rotated:
    """The grant of a retried rotation, answered again; otherwise the refusal, acting on
    what calls for it (the rare path)."""
    presented = refresh_tokens.describe(
        uow, pending.token_digest, pending.client_id, pending.scopes, pending.now
    )
    if presented is None:
        _refuse(UNKNOWN, pending)
    reason = presented.failed[0] if presented.failed else CHANGED
    if reason == refresh_tokens.USED:
        return _presented_again(uow, rotation, pending, grace, presented)
    if reason == refresh_tokens.ACCOUNT_DISABLED:
        revoke_grant(uow, presented.grant_id, "account_disabled")
    _refuse(reason, pending, presented.grant_id)


def _presented_again(
    uow: Session,
    rotation: RefreshRotation,
    pending: PendingRotation,
    grace: timedelta,
    presented: Presented,
) -> Rotated:
    """A used token presented again by its client: within ``grace`` of its rotation (or
    before it), a retry answered with the same successor; after it, reuse, and either
    this client or an attacker holds a copy: the family is revoked (RFC 9700 4.14.2)."""
    used_at = presented.used_at
    assert used_at is not None
    if pending.now - used_at >= grace:
        revoke_grant(uow, presented.grant_id, "refresh_token_reused")
        _refuse(REUSED, pending, presented.grant_id)
    if refresh_tokens.SCOPE_BEYOND_GRANT in presented.failed:
        _refuse(refresh_tokens.SCOPE_BEYOND_GRANT, pending, presented.grant_id)
    rotated = rotation.retried(uow, pending, pending.now - grace)
    if rotated is None:
        # Its successor is spent (or, with another scope, it had none to give): the
        # answer would be a dead token. Within the grace period the presenter may be
        # the client's own late request, so this is no proof of theft: nothing revoked.
        _refuse(ALREADY_ROTATED, pending, presented.grant_id)
    facts = {"client_id": pending.client_id, "grant_id": presented.grant_id}
    log.info("refresh token presented again within the grace period: same successor", extra=facts)
    return rotated


def revoke_access_token(session: Session, claims: dict[str, Any]) -> None:
    """Remember a single access token as revoked until it expires (RFC 7009); revoking a
    revoked token is a success."""
    jti = claims.get("jti")
    if not isinstance(jti, str):
        return
    now = clock.now(session)
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    access_tokens.revoke(session, jti, now, expires_at)


def access_token_live(session: Session, claims: dict[str, Any]) -> bool:
    """Whether a verified access token is neither revoked itself nor through its grant."""
    return access_tokens.live(session, claims["jti"], claims.get("grant_id"))


async def access_token_live_awaited(database: Database, claims: dict[str, Any]) -> bool:
    """:func:`access_token_live`, its round trip awaited on PostgreSQL."""
    return await access_tokens.live_awaited(database, claims["jti"], claims.get("grant_id"))


# -- tokens presented to introspection and revocation ------------------------------------


@dataclass
class PresentedToken:
    """An access or refresh token a client presented, with what we know about it."""

    uow: Session
    type: str  # access_token | refresh_token
    client_id: str
    scope: str
    claims: dict[str, Any] | None = None
    refresh: Presented | None = None
    live: bool | None = None  # an access token's liveness, where it was read already

    def check_client(self, client: Any) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        if self.type == "access_token":
            return False  # verification already refused expired ones
        assert self.refresh is not None
        return refresh_tokens.EXPIRED in self.refresh.failed

    def is_revoked(self) -> bool:
        """An access token revoked (itself or through its grant); a refresh token that the
        refresh rule refuses for anything but its age."""
        if self.type == "access_token":
            assert self.claims is not None
            live = self.live if self.live is not None else access_token_live(self.uow, self.claims)
            return not live
        assert self.refresh is not None
        return bool(set(self.refresh.failed) & REVOKED_REFRESH)

    def revoke(self) -> None:
        """Revoke this token: a refresh token takes its whole grant with it (RFC 7009 2.1)."""
        if self.type == "refresh_token":
            assert self.refresh is not None
            revoke_grant(self.uow, self.refresh.grant_id, "revoked_by_client")
        else:
            assert self.claims is not None
            revoke_access_token(self.uow, self.claims)


# What makes a presented refresh token no longer active (RFC 7662 2.2), its age apart.
REVOKED_REFRESH = frozenset(
    {refresh_tokens.REVOKED, refresh_tokens.USED, refresh_tokens.ACCOUNT_DISABLED}
)


def presented_token(
    uow: Session, service: TokenService, token: str, client_id: str
) -> PresentedToken | None:
    """Find a token ``client_id`` presented by its shape: JWT access token or opaque refresh
    token.

    The ``token_type_hint`` is not needed: the two kinds cannot be confused (RFC 7009 2.1).
    """
    if "." in token:
        claims = service.verify_access_token(token)
        if claims is None:
            return None
        return PresentedToken(
            uow, "access_token", claims.get("client_id", ""), claims.get("scope", ""), claims
        )
    found = refresh_tokens.describe(uow, digest(token), client_id, [], clock.now(uow))
    if found is None:
        return None
    return PresentedToken(uow, "refresh_token", found.client_id, found.scope, None, found)
