"""The service's symmetric secret: CSRF tokens and keyed digests derive from it.

Taken from ``IDP_SECRET_KEY`` when set; otherwise a random 256-bit key is
created once in the key store folder, so every process (and every node that
shares the folder) uses the same one and tokens survive a restart.
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
