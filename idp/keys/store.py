"""The signing key store: private keys on disk, their states in the database.

Each algorithm (RS256, ES256) has at most one ``active`` key (signs), one
``next`` key (published ahead of use so caches learn it) and any number of
``retired`` keys (published so tokens signed earlier still verify). A
``removed`` key is neither used nor published and its file is deleted.
Keys are loaded once (start-up, and when another process rotated them);
signing never touches the disk or the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import bounded_json, clock
from idp.db import versions
from idp.db.engine import Database
from idp.db.models import SigningKey

ALGORITHMS = ("RS256", "ES256")
CACHE_NAME = "keys"
# How long relying parties may cache /jwks.json (its Cache-Control max-age). A next key
# signs only once it has been published this long: an RP whose cached key set lacks it
# would reject every token it signs until its cache ran out.
JWKS_MAX_AGE = 300


class KeyStoreError(Exception):
    """The key store cannot do what was asked (unknown kid, unreadable file...)."""


class NotPublishedLongEnough(KeyStoreError):
    """A rotation would activate a key that relying parties may not have fetched yet."""


def _generate(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _jwk(alg: str, private_key: Any) -> RSAKey | ECKey:
    key_type = RSAKey if alg == "RS256" else ECKey
    return key_type.import_key(private_key)


# Stateless; made once rather than per signature.
_ES256 = ec.ECDSA(hashes.SHA256())


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


# A compact JWS: three base64url segments, nothing else (no padding, no other characters).
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    alg: str
    state: str
    jwk: RSAKey | ECKey
    # Encoded protected headers by ``typ``: a key signs with few, so each is encoded once.
    _headers: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A compact JWS (RFC 7515) of ``claims``: RS256 or ES256 (RFC 7518 3.3, 3.4)."""
        header = self._headers.get(typ)
        if header is None:
            header = _b64(json.dumps({"alg": self.alg, "kid": self.kid, "typ": typ}).encode())
            self._headers[typ] = header
        signing_input = header + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        private_key = self.jwk.private_key
        if self.alg == "ES256":
            r, s = decode_dss_signature(private_key.sign(signing_input, _ES256))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return (signing_input + b"." + _b64(signature)).decode()

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``signing_input``."""
        public_key = self.jwk.public_key
        try:
            if self.alg == "ES256":
                if len(signature) != 64:
                    return False
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                public_key.verify(encode_dss_signature(r, s), signing_input, _ES256)
            else:
                public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class KeyStore(versions.VersionedCache):
    """Loads, creates, rotates and publishes signing keys; signs JWTs."""

    cache_name = CACHE_NAME

    def __init__(self, folder: Path, passphrase: str, db: Database) -> None:
        self.folder = folder
        self.passphrase = passphrase.encode() if passphrase else b""
        self.db = db
        self._active: dict[str, LoadedKey] = {}
        self._published: list[LoadedKey] = []
        self._by_kid: dict[str, LoadedKey] = {}
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_json: bytes = b'{"keys":[]}'
        self.version = -1

    # -- files -----------------------------------------------------------------

    def _path(self, kid: str) -> Path:
        return self.folder / f"{kid}.pem"

    def _pem(self, private_key: Any) -> bytes:
        encryption = (
            serialization.BestAvailableEncryption(self.passphrase)
            if self.passphrase
            else serialization.NoEncryption()
        )
        return private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def _read(self, kid: str) -> Any:
        try:
            data = self._path(kid).read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {self._path(kid)}: {exc.strerror}") from None
        try:
            return serialization.load_pem_private_key(data, password=self.passphrase or None)
        except (ValueError, TypeError):
            raise KeyStoreError(
                f"cannot decrypt {self._path(kid)}: check IDP_KEYS_PASSPHRASE"
            ) from None

    def _create(self, session: Session, alg: str, state: str, now: datetime) -> SigningKey:
        private_key = _generate(alg)
        kid = _jwk(alg, private_key).thumbprint()
        pem = self._pem(private_key)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(kid)
        # 0600 from the first byte: the file never exists with wider permissions.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        row = SigningKey(
            kid=kid,
            alg=alg,
            state=state,
            created_at=now,
            activated_at=now if state == "active" else None,
        )
        session.add(row)
        return row

    # -- state changes (CLI, first start) ------------------------------------------

    def ensure(self) -> list[str]:
        """Create an active and a next key for every algorithm lacking them; return new kids."""
        created: list[str] = []
        now = clock.now(self.db)
        with self.db.unit_of_work() as session:
            rows = session.scalars(select(SigningKey).where(SigningKey.state != "removed")).all()
            for alg in ALGORITHMS:
                states = {row.state for row in rows if row.alg == alg}
                for state in ("active", "next"):
                    if state not in states:
                        created.append(self._create(session, alg, state, now).kid)
            if created:
                versions.bump(session, CACHE_NAME)
        return created

    def rotate(
        self, alg: str | None = None, *, force: bool = False, poll_seconds: int = 0
    ) -> list[str]:
        """Next becomes active, active becomes retired, a new next is made; return new actives.

        Refused (:class:`NotPublishedLongEnough`, nothing changed) unless each next key was
        made at least ``JWKS_MAX_AGE`` plus ``poll_seconds`` (how late the servers publish
        it, IDP_CACHE_POLL_SECONDS) ago; ``force`` rotates anyway (a key compromised)."""
        activated: list[str] = []
        now = clock.now(self.db)
        published_since = None if force else now - timedelta(seconds=JWKS_MAX_AGE + poll_seconds)
        with self.db.unit_of_work() as session:
            for algorithm in [alg] if alg else list(ALGORITHMS):
                activated.append(self._rotate(session, algorithm, now, published_since))
            versions.bump(session, CACHE_NAME)
        return activated

    def _rotate(
        self, session: Session, alg: str, now: datetime, published_since: datetime | None = None
    ) -> str:
        rows = session.scalars(
            select(SigningKey)
            .where(SigningKey.alg == alg, SigningKey.state.in_(("active", "next")))
            .with_for_update()
        ).all()
        by_state = {row.state: row for row in rows}
        if published_since is not None:
            upcoming = by_state.get("next")
            if upcoming is None:
                raise NotPublishedLongEnough(f"there is no published next {alg} key to activate")
            if upcoming.created_at > published_since:
                age = int((now - upcoming.created_at).total_seconds())
                wait = int((upcoming.created_at - published_since).total_seconds()) + 1
                raise NotPublishedLongEnough(
                    f"the next {alg} key {upcoming.kid} was published {age} s ago and relying "
                    f"parties may cache the key set for {JWKS_MAX_AGE} s: rotate in {wait} s"
                )
        if "active" in by_state:
            by_state["active"].state = "retired"
            by_state["active"].retired_at = now
        new_active = by_state.get("next") or self._create(session, alg, "next", now)
        new_active.state = "active"
        new_active.activated_at = now
        session.flush()
        self._create(session, alg, "next", now)
        return new_active.kid

    def retire(self, kid: str) -> str:
        """Take a key out of use: active or next -> retired (the algorithm rotates past it);
        retired -> removed (no longer published, file deleted). Returns the new state."""
        now = clock.now(self.db)
        with self.db.unit_of_work() as session:
            row = session.get(SigningKey, kid, with_for_update=True)
            if row is None or row.state == "removed":
                raise KeyStoreError(f"no such key: {kid}")
            if row.state == "active":
                self._rotate(session, row.alg, now)
            elif row.state == "next":
                row.state = "retired"
                row.retired_at = now
                session.flush()
                self._create(session, row.alg, "next", now)
            else:
                row.state = "removed"
                row.removed_at = now
                self._path(kid).unlink(missing_ok=True)
            state = row.state
            versions.bump(session, CACHE_NAME)
        return state

    def rows(self) -> list[SigningKey]:
        """Every key's metadata, newest first."""
        with self.db.unit_of_work() as session:
            return list(
                session.scalars(
                    select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)
                )
            )

    # -- loading and use -------------------------------------------------------------

    def load(self) -> None:
        """(Re)read key metadata and private keys; rebuild the JWKS. Not for hot paths."""
        with self.db.unit_of_work() as session:
            version = versions.current(session, CACHE_NAME)
            rows = session.scalars(
                select(SigningKey)
                .where(SigningKey.state != "removed")
                .order_by(SigningKey.created_at, SigningKey.kid)
            ).all()
        previous = {key.kid: key.jwk for key in self._published}
        loaded = []
        for row in rows:
            jwk = previous.get(row.kid) or _jwk(row.alg, self._read(row.kid))
            loaded.append(LoadedKey(row.kid, row.alg, row.state, jwk))
        order = {"active": 0, "next": 1, "retired": 2}
        loaded.sort(key=lambda key: order[key.state])
        self._published = loaded
        self._by_kid = {key.kid: key for key in loaded}
        self._active = {key.alg: key for key in loaded if key.state == "active"}
        self.jwks = {
            "keys": [
                {**key.jwk.as_dict(private=False), "kid": key.kid, "alg": key.alg, "use": "sig"}
                for key in loaded
            ]
        }
        self.jwks_json = json.dumps(self.jwks, separators=(",", ":")).encode()
        self.version = version

    @property
    def loaded(self) -> bool:
        return all(alg in self._active for alg in ALGORITHMS)

    def active(self, alg: str) -> LoadedKey:
        """The key that signs with ``alg`` now."""
        try:
            return self._active[alg]
        except KeyError:
            raise KeyStoreError(f"no active {alg} key; run `idp keys list`") from None

    def sign(self, claims: dict[str, Any], alg: str, typ: str = "JWT") -> str:
        """A compact JWS of ``claims`` signed by the active ``alg`` key.

        Signed here with ``cryptography`` rather than through joserfc's encoder: the
        header is encoded once per key, and the token endpoint spends less on each
        token than the signature itself costs (tests verify the tokens with joserfc).
        """
        return self.active(alg).sign(claims, typ)

    def decode(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Header and claims of a compact JWS signed by a published key (RFC 7515), else None.

        The key is the one the header's ``kid`` names, and only for its own ``alg``. Checked
        here with ``cryptography`` rather than through joserfc's decoder, which cost as much
        as the signature check itself; tests check these tokens with joserfc as well.
        """
        data = token.encode("ascii", "replace")
        if _COMPACT_JWS.fullmatch(data) is None:
            return None
        signing_input, _, signature = data.rpartition(b".")
        encoded_header, _, encoded_claims = signing_input.partition(b".")
        try:
            # The header is read before the signature is checked: anyone's JSON.
            header = bounded_json.loads(_unb64(encoded_header))
            if not isinstance(header, dict):
                return None
            key = self._by_kid.get(header.get("kid"))  # type: ignore[arg-type]
            if key is None or header.get("alg") != key.alg:
                return None
            if not key.verify(signing_input, _unb64(signature)):
                return None
            claims = json.loads(_unb64(encoded_claims))
        except (ValueError, TypeError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        return header, claims

    def public_keyset(self) -> KeySet:
        """The published public keys, for verifying our own tokens."""
        return KeySet.import_key_set(self.jwks)
