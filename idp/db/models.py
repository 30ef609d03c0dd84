"""SQLAlchemy models shared by every part of the service.

Each aggregate owns its table(s); the migrations in ``idp/db/migrations`` create
exactly these. Secrets are never stored in clear: columns named ``*_digest``
hold SHA-256 digests of high-entropy values, or keyed digests (HMAC-SHA256 under a
subkey of the service secret) of short codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use idp.clock")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class SigningKey(Base):
    """Metadata of one signing key; the private key lives in the key store folder."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # next | active | retired | removed
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]


class CacheVersion(Base):
    """A counter per cached data set (keys, clients); workers reload when it moves."""

    __tablename__ = "cache_versions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEvent(Base):
    """Append-only, hash-chained record of a security-relevant event.

    The chain covers what happened (``at``, ``event``, ``actor``, ``client_id``,
    ``data``) and ``seal``, an HMAC of the personal fields (``account_id``, ``ip``,
    ``personal``) under the event's own random ``seal_key``. Erasing an account's
    personal data clears those four columns: the chain still verifies (idp.audit).
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str | None] = mapped_column(String(255))
    account_id: Mapped[int | None] = mapped_column(Integer, index=True)
    client_id: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    personal: Mapped[dict[str, Any] | None]
    seal: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    seal_key: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class AuditHead(Base):
    """The single row holding the chain's last hash; locked while appending."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class Account(Base):
    """A citizen's or staff member's account: login email, password hash, proofing level."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)  # public `sub`
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised, lower case
    email_verified_at: Mapped[datetime | None]
    password_hash: Mapped[str | None] = mapped_column(String(255))
    proofing_level: Mapped[str] = mapped_column(String(16), default="none")
    locale: Mapped[str] = mapped_column(String(8), default="de")
    given_name: Mapped[str | None] = mapped_column(String(255))  # self-asserted
    family_name: Mapped[str | None] = mapped_column(String(255))  # self-asserted
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    # The kind of principal (idp.accounts.realms): citizen | staff.
    kind: Mapped[str] = mapped_column(String(16), server_default="citizen")


class LoginSession(Base):
    """A browser's single sign-on session; the cookie holds a secret, we its digest."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)  # `sid` claim, not a secret
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    auth_time: Mapped[datetime]
    # [{"method": "pwd", "at": iso8601}, ...]: RFC 8176 amr values with their times
    methods: Mapped[list[Any]] = mapped_column(default=list)
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    # The realm it was opened in (idp.accounts.realms): only that realm's pages accept it.
    kind: Mapped[str] = mapped_column(String(16), server_default="citizen")

    __table_args__ = (Index("ix_login_sessions_account_id", "account_id"),)


class Flow(Base):
    """A self-service flow (login, registration, recovery, step-up, authorization...).

    Created, shown, submitted, finished: ``state`` holds the flow's data,
    ``return_to`` where the browser goes when it completes.
    """

    __tablename__ = "flows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    return_to: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]


# -- OpenID Connect: clients, codes, grants, tokens, consents, logout outbox ------------------


class Client(Base):
    """A registered relying party (portal app). Secrets are stored as SHA-256 digests."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # client_secret_basic | client_secret_post | private_key_jwt | none
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    post_logout_redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    grant_types: Mapped[list[Any]] = mapped_column(default=list)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    subject_type: Mapped[str] = mapped_column(String(16), default="public")  # public | pairwise
    sector_identifier: Mapped[str | None] = mapped_column(String(255))
    default_acr: Mapped[str | None] = mapped_column(String(255))
    minimum_acr: Mapped[str | None] = mapped_column(String(255))
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Grant(Base):
    """What one login gave one client: the family of tokens from one authorization code.

    Access tokens carry its id (``grant_id``); refresh tokens belong to it. Revoking
    the grant (logout, reuse of a refresh token, a replayed code) revokes them all.
    """

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    login_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="SET NULL"), index=True
    )
    sid: Mapped[str | None] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the `claims` request parameter
    auth_time: Mapped[datetime]
    acr: Mapped[str | None] = mapped_column(String(255))
    amr: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_grants_account_id_client_id", "account_id", "client_id"),)


class AuthorizationCode(Base):
    """An issued authorization code (its digest): single use, short-lived."""

    __tablename__ = "authorization_codes"

    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    login_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="SET NULL")
    )
    sid: Mapped[str | None] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auth_time: Mapped[datetime]
    acr: Mapped[str | None] = mapped_column(String(255))
    amr: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    grant_id: Mapped[str | None] = mapped_column(String(64))  # set when redeemed


class RefreshToken(Base):
    """A refresh token (its digest). Rotated on use; a used one presented again is reuse."""

    __tablename__ = "refresh_tokens"

    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RevokedAccessToken(Base):
    """The ``jti`` of a JWT access token revoked before it expired (RFC 7009)."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ClientAssertionJti(Base):
    """A ``private_key_jwt`` assertion's ``jti`` seen before its expiry (replay defence)."""

    __tablename__ = "client_assertion_jtis"

    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (PrimaryKeyConstraint("client_id", "jti"),)


class Consent(Base):
    """The scopes a citizen allowed a client; asked again only for scopes beyond them."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    granted_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("account_id", "client_id"),)


class BackchannelLogout(Base):
    """Outbox of logout tokens (Back-Channel Logout 1.0), delivered with retries."""

    __tablename__ = "backchannel_logouts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)
    logout_token: Mapped[str] = mapped_column(Text)
    sid: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


# --- Accounts part: login throttling and the mail outbox ---------------------


class LoginThrottle(Base):
    """Wrong-password counter for one login identifier or one client IP.

    ``key`` is ``email:<sha256 of the normalised email>`` (known and unknown
    addresses alike, so a lockout reveals nothing) or ``ip:<address>``.
    Kept in the database so the limit holds across processes and nodes. The
    same rows hold the windowed counters of :mod:`idp.db.counters` under their own
    key prefixes (mail cool-downs ``mail:``, email code tries ``verify-code:`` and
    ``verify-day:``, flows per client address ``flows:ip:``; ``failures`` counts the
    window, which ends at ``blocked_until``) and the maintenance turn
    (idp/db/retention.py: ``lease:maintenance``, held until ``blocked_until``).
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class MailMessage(Base):
    """One outgoing mail, written in the transaction of the change that causes it.

    The sender renders ``template`` in ``locale`` with ``context`` when it
    delivers; the context (which may hold a link's token) is erased once sent.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime]
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending | sent | failed | withheld (written for equal work, never sent: idp.mail.outbox)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]  # a sender is delivering it until then
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_mail_outbox_status_next_attempt_at", "status", "next_attempt_at"),)


# --- Second factors and verified identity (assurance) --------------------------------


class SecondFactor(Base):
    """A citizen's second factor: a TOTP app, a passkey, or a set of recovery codes.

    ``binding`` records how the factor was bound (``proofing``, ``high_session``,
    ``low_session``): the assurance policy lets only the first two lift a session.
    """

    __tablename__ = "second_factors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # totp | passkey | recovery_codes
    label: Mapped[str] = mapped_column(String(64))
    binding: Mapped[str] = mapped_column(String(16))
    amr: Mapped[str] = mapped_column(String(8))  # RFC 8176 value recorded when used
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    # Consecutive wrong codes, and until when the factor refuses codes after too many.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    # TOTP: the secret, AES-GCM encrypted; the last accepted time step (replay defence).
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Passkey (WebAuthn credential).
    credential_id: Mapped[bytes | None] = mapped_column(LargeBinary(1024), unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary(2048))
    sign_count: Mapped[int | None] = mapped_column(BigInteger)
    transports: Mapped[list[Any] | None] = mapped_column()


class RecoveryCode(Base):
    """One single-use recovery code of a set; only its keyed digest (HMAC-SHA256) is kept."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factor_id: Mapped[int] = mapped_column(
        ForeignKey("second_factors.id", ondelete="CASCADE"), index=True
    )
    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    used_at: Mapped[datetime | None]


class VerifiedIdentity(Base):
    """Identity data proven by the eID or by a clerk checking an ID document.

    Filled by the eID and in-person paths; the newest row not revoked is the
    account's verified identity. Self-asserted data never lives here. The ID
    card's serial number is never stored (PAuswG section 20).
    """

    __tablename__ = "verified_identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    given_name: Mapped[str] = mapped_column(String(255))
    family_name: Mapped[str] = mapped_column(String(255))
    birth_family_name: Mapped[str | None] = mapped_column(String(255))
    birthdate: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    place_of_birth_locality: Mapped[str | None] = mapped_column(String(255))
    place_of_birth_country: Mapped[str | None] = mapped_column(String(3))
    street_address: Mapped[str | None] = mapped_column(String(255))
    postal_code: Mapped[str | None] = mapped_column(String(16))
    locality: Mapped[str | None] = mapped_column(String(255))
    country: Mapped[str | None] = mapped_column(String(3))
    nationalities: Mapped[list[Any]] = mapped_column(default=list)  # ISO 3166-1 alpha-3
    # Evidence: eid (online ID card) or pipp (physical in-person proofing).
    evidence_method: Mapped[str] = mapped_column(String(8))
    verified_at: Mapped[datetime]
    verifier: Mapped[str] = mapped_column(String(255))  # the office or eID service
    document_type: Mapped[str | None] = mapped_column(String(32))  # idcard, passport, ...
    document_issuer_country: Mapped[str | None] = mapped_column(String(3))
    document_expiry: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    trust_framework: Mapped[str] = mapped_column(String(32))
    assurance_level: Mapped[str] = mapped_column(String(32))
    txn: Mapped[str] = mapped_column(String(64), unique=True)  # reference in audit and claims
    revoked_at: Mapped[datetime | None]
