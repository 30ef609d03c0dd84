"""Encryption at rest for secrets the service must read back (TOTP seeds).

Digests cannot be used for a TOTP seed: the service needs it to compute codes.
Seeds are sealed with AES-256-GCM under a key kept in the key folder
(``factor-secrets.key``, created on first start, mode 0600), never in the
database, so a database dump alone does not reveal them. The associated data
binds each ciphertext to its owner, so a sealed value copied to another row
does not open.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "factor-secrets.key"
_NONCE = 12


class SecretBoxError(Exception):
    """A sealed value does not open: wrong key, wrong owner, or tampered with."""


class SecretBox:
    """Seals and opens small secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret box key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, folder: Path) -> SecretBox:
        """The box whose key is in ``folder``; creates the key file once, race-free."""
        path = folder / KEY_FILE
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{KEY_FILE}.{secrets.token_hex(8)}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(base64.b64encode(AESGCM.generate_key(bit_length=256)) + b"\n")
            try:
                # Linking fails if another worker created the key first: then use theirs.
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return cls(base64.b64decode(path.read_bytes().strip()))

    def seal(self, plaintext: bytes, owner: str) -> bytes:
        """Nonce and ciphertext of ``plaintext``, bound to ``owner``."""
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, owner.encode())

    def open(self, sealed: bytes, owner: str) -> bytes:
        """The plaintext of a value sealed for ``owner``; raises SecretBoxError."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], owner.encode())
        except (InvalidTag, ValueError):
            raise SecretBoxError("sealed value does not open") from None
