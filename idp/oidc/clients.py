"""The client registry: relying parties in the database, served from an in-process cache.

Operators add, change and remove clients (``idp clients ...``); each change bumps
the ``clients`` cache version in the same transaction, so every worker reloads
its cache within IDP_CACHE_POLL_SECONDS, and at once on a miss. Hot paths (the
token endpoint) only read the cache. Secrets are shown once and kept as
SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp import clock
from idp.audit.events import record
from idp.db import versions
from idp.db.engine import Database
from idp.db.models import Client

CACHE_NAME = "clients"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
KEY_METHOD = "private_key_jwt"
PUBLIC_METHOD = "none"  # public clients: no authentication, PKCE instead
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SCOPES = ("openid", "profile", "email", "address", "phone", "identity", "offline_access")
SUBJECT_TYPES = ("public", "pairwise")
SIGNING_ALGS = ("RS256", "ES256")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A client_id an operator chooses: unreserved URI characters, never read as an option.
CLIENT_ID_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")
_ID_ALPHABET = string.ascii_letters + string.digits
DEFAULTS: dict[str, Any] = {
    "redirect_uris": list,
    "post_logout_redirect_uris": list,
    "scopes": lambda: ["openid"],
    "grant_types": lambda: ["authorization_code"],
    "first_party": False,
    "subject_type": "public",
    "id_token_signed_response_alg": "RS256",
}


class ClientConfigurationError(ValueError):
    """A client registration is invalid; the message says which field and why."""


def secret_digest(secret: str) -> bytes:
    """The stored form of a client secret."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class RegisteredClient(ClientMixin):
    """One client as the protocol code sees it: immutable, cached, no database access."""

    client_id: str
    name: str
    secret_digest: bytes | None
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    grant_types: frozenset[str]
    first_party: bool
    subject_type: str
    sector_identifier: str | None
    default_acr: str | None
    minimum_acr: str | None
    backchannel_logout_uri: str | None
    id_token_signed_response_alg: str
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    client_metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Client) -> RegisteredClient:
        return cls(
            client_id=row.client_id,
            name=row.name,
            secret_digest=row.secret_digest,
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            redirect_uris=tuple(row.redirect_uris),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
            scopes=frozenset(row.scopes),
            grant_types=frozenset(row.grant_types),
            first_party=row.first_party,
            subject_type=row.subject_type,
            sector_identifier=row.sector_identifier,
            default_acr=row.default_acr,
            minimum_acr=row.minimum_acr,
            backchannel_logout_uri=row.backchannel_logout_uri,
            id_token_signed_response_alg=row.id_token_signed_response_alg,
            jwks=row.jwks,
            jwks_uri=row.jwks_uri,
            # authlib's end-session endpoint reads the registered URIs from here.
            client_metadata={"post_logout_redirect_uris": list(row.post_logout_redirect_uris)},
        )

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == PUBLIC_METHOD

    # -- authlib's ClientMixin ----------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect makes redirect_uri a required parameter: no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this client may have; unknown ones are ignored (OIDC 3.1.2.1)."""
        if not scope:
            return ""
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_digest is None:
            return False
        return hmac.compare_digest(secret_digest(client_secret), self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class ClientRegistry(versions.VersionedCache):
    """Every client, loaded into memory; reloaded when the ``clients`` version moves."""

    cache_name = CACHE_NAME

    def __init__(self, db: Database) -> None:
        self.db = db
        self._clients: dict[str, RegisteredClient] = {}
        self.version = -1

    def load(self) -> None:
        """(Re)read every client. Not for hot paths."""
        with self.db.unit_of_work() as session:
            version = versions.current(session, CACHE_NAME)
            rows = session.scalars(select(Client)).all()
            clients = {row.client_id: RegisteredClient.from_row(row) for row in rows}
        self._clients = clients
        self.version = version

    def get(self, client_id: str | None) -> RegisteredClient | None:
        """The client, from memory; a miss checks once whether the registry changed."""
        if not client_id:
            return None
        client = self._clients.get(client_id)
        if client is None and len(client_id) <= 64:
            # Look again even when this refresh found nothing new: another thread (the
            # periodic refresh) may have reloaded between the miss and the version check.
            self.refresh_if_changed()
            client = self._clients.get(client_id)
        return client

    def all(self) -> list[RegisteredClient]:
        return sorted(self._clients.values(), key=lambda c: c.name)


# -- registration (CLI, demo) ----------------------------------------------------------------


def _check_uri(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.fragment or not parts.netloc:
        raise ClientConfigurationError(f"{what} {value!r} must be an absolute URL without fragment")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return value
    raise ClientConfigurationError(f"{what} {value!r} must use https (http only on loopback)")


def _subset(values: Iterable[str], allowed: tuple[str, ...], what: str) -> list[str]:
    result = list(dict.fromkeys(values))
    unknown = [v for v in result if v not in allowed]
    if unknown:
        raise ClientConfigurationError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(allowed)})"
        )
    return result


def _sector(row: Client) -> str | None:
    if row.subject_type != "pairwise":
        return None
    if row.sector_identifier:
        return row.sector_identifier
    hosts = {urlsplit(uri).hostname for uri in row.redirect_uris}
    if len(hosts) != 1:
        raise ClientConfigurationError(
            "a pairwise client whose redirect URIs have several hosts needs --sector-identifier"
        )
    return hosts.pop()


def _validate(row: Client) -> None:
    """Check a whole registration; raise ClientConfigurationError."""
    if not row.name.strip():
        raise ClientConfigurationError("a client needs a name")
    row.redirect_uris = [_check_uri(u, "redirect URI") for u in dict.fromkeys(row.redirect_uris)]
    row.post_logout_redirect_uris = [
        _check_uri(u, "post-logout redirect URI")
        for u in dict.fromkeys(row.post_logout_redirect_uris)
    ]
    row.scopes = _subset(row.scopes, SCOPES, "scope")
    row.grant_types = _subset(row.grant_types, GRANT_TYPES, "grant type")
    if row.token_endpoint_auth_method not in AUTH_METHODS:
        raise ClientConfigurationError(f"unknown auth method {row.token_endpoint_auth_method!r}")
    if "authorization_code" in row.grant_types and not row.redirect_uris:
        raise ClientConfigurationError("the authorization_code grant needs a redirect URI")
    if row.token_endpoint_auth_method == PUBLIC_METHOD and "client_credentials" in row.grant_types:
        raise ClientConfigurationError("a public client cannot use client_credentials")
    if row.token_endpoint_auth_method == KEY_METHOD:
        if bool(row.jwks) == bool(row.jwks_uri):
            raise ClientConfigurationError("private_key_jwt needs exactly one of jwks or jwks_uri")
        if row.jwks_uri:
            _check_uri(row.jwks_uri, "jwks_uri")
    if row.backchannel_logout_uri:
        _check_uri(row.backchannel_logout_uri, "back-channel logout URI")
    if row.subject_type not in SUBJECT_TYPES:
        raise ClientConfigurationError(f"subject type must be one of {', '.join(SUBJECT_TYPES)}")
    row.sector_identifier = _sector(row)
    if row.id_token_signed_response_alg not in SIGNING_ALGS:
        raise ClientConfigurationError(f"ID token alg must be one of {', '.join(SIGNING_ALGS)}")


def _apply_secret(row: Client) -> str | None:
    """Give a secret-authenticated client a new secret; return it (shown once)."""
    if row.token_endpoint_auth_method in SECRET_METHODS:
        secret = secrets.token_urlsafe(32)
        row.secret_digest = secret_digest(secret)
        return secret
    row.secret_digest = None
    return None


def new_client_id() -> str:
    """22 letters and digits (131 bits): one word to copy, never taken for a CLI option."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def add_client(
    session: Session, *, actor: str | None = None, **fields: Any
) -> tuple[Client, str | None]:
    """Register a client; return the row and its secret (None for public/private_key_jwt)."""
    now = clock.now(session)
    client_id = fields.pop("client_id", None) or new_client_id()
    if not CLIENT_ID_FORM.fullmatch(client_id):
        raise ClientConfigurationError(
            "client_id must be 1 to 64 letters, digits, '.', '_', '~' or '-',"
            " starting with a letter or digit"
        )
    if session.get(Client, client_id) is not None:
        raise ClientConfigurationError(f"client {client_id!r} exists already")
    for name, value in DEFAULTS.items():
        fields.setdefault(name, value() if callable(value) else value)
    row = Client(client_id=client_id, created_at=now, updated_at=now, **fields)
    _validate(row)
    secret = _apply_secret(row)
    session.add(row)
    session.flush()
    versions.bump(session, CACHE_NAME)
    record(session, "client.added", actor=actor, client_id=client_id, data={"name": row.name})
    return row, secret


def update_client(
    session: Session,
    client_id: str,
    *,
    new_secret: bool = False,
    actor: str | None = None,
    **changes: Any,
) -> tuple[Client, str | None]:
    """Change a client's registration; with ``new_secret`` (or a new auth method) a new secret."""
    row = find_client(session, client_id)
    method_before = row.token_endpoint_auth_method
    for name, value in changes.items():
        setattr(row, name, value)
    _validate(row)
    secret = None
    if new_secret or row.token_endpoint_auth_method != method_before:
        secret = _apply_secret(row)
    row.updated_at = clock.now(session)
    versions.bump(session, CACHE_NAME)
    record(
        session,
        "client.updated",
        actor=actor,
        client_id=client_id,
        data={"fields": sorted(changes), "new_secret": secret is not None},
    )
    return row, secret


def remove_client(session: Session, client_id: str, *, actor: str | None = None) -> None:
    """Delete a client; its codes, grants, tokens and consents go with it."""
    find_client(session, client_id)
    session.execute(delete(Client).where(Client.client_id == client_id))
    versions.bump(session, CACHE_NAME)
    record(session, "client.removed", actor=actor, client_id=client_id)


def find_client(session: Session, client_id: str) -> Client:
    """The client row; ClientConfigurationError if there is none."""
    row = session.get(Client, client_id)
    if row is None:
        raise ClientConfigurationError(f"no such client: {client_id}")
    return row


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.name, Client.client_id)))


def describe(row: Client) -> dict[str, Any]:
    """A client's registration as JSON-able data (never the secret or its digest)."""
    return {
        "client_id": row.client_id,
        "name": row.name,
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "redirect_uris": row.redirect_uris,
        "post_logout_redirect_uris": row.post_logout_redirect_uris,
        "scopes": row.scopes,
        "grant_types": row.grant_types,
        "first_party": row.first_party,
        "subject_type": row.subject_type,
        "sector_identifier": row.sector_identifier,
        "default_acr": row.default_acr,
        "minimum_acr": row.minimum_acr,
        "backchannel_logout_uri": row.backchannel_logout_uri,
        "id_token_signed_response_alg": row.id_token_signed_response_alg,
        "jwks": row.jwks,
        "jwks_uri": row.jwks_uri,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
