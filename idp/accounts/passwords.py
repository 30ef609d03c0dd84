"""Passwords per NIST SP 800-63B: length, a blocklist, no composition rules; argon2id.

Passwords are NFKC-normalised (800-63B 5.1.1.2) before they are checked or
hashed, so the same passphrase typed on different keyboards matches. The
blocklist is the 30,000 most common passwords that zxcvbn ships (drawn from
leaked password corpora; German ones such as "passwort", "hallo123",
"schalke04" included); optionally the Have I Been Pwned range API is asked
too, sending only the first five hex digits of the password's SHA-1.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import unicodedata
import urllib.request
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.accounts.errors import PasswordRejected
from idp.settings import Settings

log = logging.getLogger("idp.accounts")
HIBP_TIMEOUT = 3


def normalise(password: str) -> str:
    """The form of a password that is checked and hashed."""
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled blocklist, lower case (loaded once)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _pwned(password: str, settings: Settings) -> bool:
    digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
        settings.hibp_url + digest[:5],
        headers={"Add-Padding": "true", "User-Agent": "idp"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HIBP_TIMEOUT) as response:  # noqa: S310
            body = response.read().decode()
    except (OSError, ValueError) as exc:
        # The bundled list still applies; an outage must not stop registrations.
        log.warning("Have I Been Pwned range API unavailable: %s", exc)
        return False
    for line in body.splitlines():
        suffix, _, count = line.partition(":")
        if suffix.strip() == digest[5:] and count.strip() not in ("", "0"):
            return True
    return False


def check_password(password: str, email: str, settings: Settings) -> str:
    """Return the normalised password if acceptable; raise PasswordRejected with the reason."""
    password = normalise(password)
    if len(password) < settings.password_min_length:
        raise PasswordRejected("password.too_short", min=settings.password_min_length)
    if len(password) > settings.password_max_length:
        raise PasswordRejected("password.too_long", max=settings.password_max_length)
    lowered = password.casefold()
    if lowered in (email.casefold(), email.split("@", 1)[0].casefold()):
        raise PasswordRejected("password.equals_email")
    if lowered in common_passwords():
        raise PasswordRejected("password.common")
    if settings.hibp_enabled and _pwned(password, settings):
        raise PasswordRejected("password.breached")
    return password


class Passwords:
    """argon2id with the configured parameters, and a dummy hash for unknown accounts."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verifying against this for unknown emails costs what a real check costs.
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """A new argon2id hash of the (normalised) password."""
        return self.hasher.hash(normalise(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no hash, spend the same time and say no."""
        try:
            return self.hasher.verify(password_hash or self.dummy_hash, normalise(password)) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self.hasher.check_needs_rehash(password_hash)


@cache
def _passwords(time_cost: int, memory_kib: int, parallelism: int) -> Passwords:
    return Passwords(time_cost, memory_kib, parallelism)


def passwords_for(settings: Settings) -> Passwords:
    """The process's hasher for the configured parameters (built once)."""
    return _passwords(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )
