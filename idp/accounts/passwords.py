"""Passwords per NIST SP 800-63B: length, a blocklist, no composition rules; argon2id.

Passwords are NFKC-normalised (800-63B 5.1.1.2) before they are checked or
hashed, so the same passphrase typed on different keyboards matches. The
blocklist is the 30,000 most common passwords that zxcvbn ships (drawn from
leaked password corpora; German ones such as "passwort", "hallo123",
"schalke04" included); optionally the Have I Been Pwned range API is asked
too, sending only the first five hex digits of the password's SHA-1.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import secrets
import unicodedata
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.accounts.argon2id import Argon2id
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


# The hashing threads' name, also in the operating system's view (top -H, /proc/PID/task):
# the benchmark tells their CPU apart from the rest of a login's (bench/run.py).
HASHING_THREAD = "argon2id"
PR_SET_NAME = 15  # Linux prctl option


def _name_native_thread() -> None:
    """Give the calling thread the hashing threads' name in the kernel too (Linux only)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, HASHING_THREAD.encode(), 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("thread names are not shown to the operating system here")


class Passwords:
    """argon2id with the configured parameters, and a dummy hash for unknown accounts.

    Hashes are computed in ``threads`` threads of the hasher's own, each holding one
    argon2id memory buffer (19 MiB by default) for good (idp/accounts/argon2id.py): a
    worker's memory is bounded by its hashing threads, not by its request threads.
    """

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int, threads: int = 1) -> None:
        self.hasher = Argon2id(time_cost, memory_kib, parallelism)
        self._threads = ThreadPoolExecutor(
            threads, thread_name_prefix=HASHING_THREAD, initializer=_name_native_thread
        )
        # Verifying against this for unknown emails costs what a real check costs.
        self.dummy_hash = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """A new argon2id hash of the (normalised) password."""
        return self._threads.submit(self.hasher.hash, normalise(password)).result()

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no hash, spend the same time and say no."""
        return self._threads.submit(self._verify, password_hash, normalise(password)).result()

    async def hash_awaited(self, password: str) -> str:
        """:meth:`hash`, awaited: the event loop serves others while a hashing thread works."""
        return await asyncio.wrap_future(
            self._threads.submit(self.hasher.hash, normalise(password))
        )

    async def verify_awaited(self, password_hash: str | None, password: str) -> bool:
        """:meth:`verify`, awaited: the event loop serves others while a hashing thread works."""
        return await asyncio.wrap_future(
            self._threads.submit(self._verify, password_hash, normalise(password))
        )

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash or self.dummy_hash, password) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self.hasher.check_needs_rehash(password_hash)


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 1) -> None:
    """Let glibc keep at most ``arenas`` malloc arenas, in this process and its children.

    glibc gives threads arenas of their own (up to eight per core) and keeps freed
    memory in each of them. Request threads come and go in a worker's thread pool, and
    what their C libraries (SQLite's page cache, OpenSSL, psycopg) freed would stay
    spread over those arenas. Python allocates small objects outside malloc, so the
    one arena's lock is rarely contended. Call it first thing: arenas made before stay.
    Worker processes read the environment variable when they start. A no-op where the
    C library is not glibc.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))
    except (OSError, AttributeError, ValueError):
        log.debug("not glibc: malloc arenas left as they are")


@cache
def _passwords(time_cost: int, memory_kib: int, parallelism: int, threads: int) -> Passwords:
    return Passwords(time_cost, memory_kib, parallelism, threads)


def passwords_for(settings: Settings) -> Passwords:
    """The process's hasher for the configured parameters (built once).

    It hashes in half as many threads as this process's share of the cores (at least
    one): each hashing thread holds the hash's memory (19 MiB by default) for its life,
    and the requests around the hashes need CPU too. In production shape (one worker per
    core) that is one hashing thread per worker; a single worker on several cores hashes
    in fewer threads than it could, to keep its memory bounded (bench/RESULTS.md, two
    cores: one worker logs citizens in at 0.6x the rate of bare verifies on all cores,
    two workers at 0.7x, with the load generator on the same cores).
    """
    threads = max(1, (os.cpu_count() or 1) // (2 * settings.workers))
    return _passwords(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism, threads
    )
