"""The service's symmetric secret: CSRF tokens and keyed digests derive from it.

Taken from ``IDP_SECRET_KEY`` when set (at least 32 bytes, checked by the
settings); otherwise a random 256-bit key is created once in the key store
folder, so every process (and every node that shares the folder) uses the same
one and tokens survive a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from idp.settings import Settings

FILE_NAME = "secret.key"


def load_secret_key(settings: Settings) -> bytes:
    """The configured secret, or the one kept in the key folder (created if missing)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.keys_dir) / FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        # link() is atomic and refuses to overwrite: when two workers start at
        # once, both end up reading the first one's complete key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    return path.read_text().strip().encode()


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose, so one use's tokens are worthless for another."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


class CodeDigests:
    """Stored form of short codes (recovery codes, email codes): HMAC-SHA256 under a
    subkey of the service secret for each purpose.

    A plain hash of a six-digit or 50-bit code falls to a dictionary in seconds; keyed,
    a database dump alone reveals nothing without the secret.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def digest(self, purpose: str, value: str) -> bytes:
        """The keyed digest of ``value`` for ``purpose`` (e.g. ``recovery-codes``)."""
        key = self._keys.get(purpose)
        if key is None:
            key = self._keys[purpose] = derive_key(self._secret, f"code-digests:{purpose}")
        return hmac.new(key, value.encode(), hashlib.sha256).digest()

    def matches(self, purpose: str, value: str | None, stored: bytes | None) -> bool:
        """Whether ``value`` is the code stored as ``stored`` (constant-time comparison)."""
        if not value or not stored:
            return False
        return hmac.compare_digest(self.digest(purpose, value), stored)
