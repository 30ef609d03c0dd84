"""Encryption at rest for secrets the service must read back (TOTP seeds).

Digests cannot be used for a TOTP seed: the service needs it to compute codes.
Seeds are sealed with AES-256-GCM under a key derived from the service secret
(:mod:`idp.keys.secret`: ``IDP_SECRET_KEY`` or the key folder), never kept in
the database, so a database dump alone does not reveal them; changing that
secret makes enrolled TOTP apps unusable. The associated data
binds each ciphertext to its owner, so a sealed value copied to another row
does not open.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class SecretBoxError(Exception):
    """A sealed value does not open: wrong key, wrong owner, or tampered with."""


class SecretBox:
    """Seals and opens small secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret box key must be 32 bytes")
        self._aead = AESGCM(key)

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
