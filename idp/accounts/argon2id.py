"""argon2id (RFC 9106) over one memory buffer per hashing thread, reused for every hash.

argon2-cffi's ``PasswordHasher`` lets the C library allocate its memory (19 MiB at
the default m=19456) with ``malloc`` for each hash and free it afterwards. glibc then
either maps and unmaps it each time (a page fault per 4 KiB page: about +50% CPU per
hash, measured) or, once its dynamic mmap threshold has grown past that size, keeps
it and up to twice as much again as untrimmed free heap (a worker grew from 100 MB
idle to 140-160 MB under logins). The reference implementation accepts allocation
callbacks in its context (``argon2_context.allocate_cbk``/``free_cbk``), so here each
hashing thread keeps one buffer of its own for its lifetime: resident once, never
faulted again, and wiped by the library after every hash (it clears its internal
memory before calling ``free_cbk``).

Hashes are the standard PHC strings (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``),
interchangeable with argon2-cffi's: parameters are read with its
``extract_parameters`` and stale ones detected with its ``check_needs_rehash``.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION, error_to_str, ffi, lib

SALT_BYTES = 16
HASH_BYTES = 32

_local = threading.local()


@ffi.callback("int(uint8_t **, size_t)")
def _allocate(memory, size):  # a C callback: (uint8_t **memory, size_t size) -> int
    buffer = getattr(_local, "buffer", None)
    if buffer is None or ffi.sizeof(buffer) != size:
        # First hash in this thread (or other parameters): zero-filled and mapped by
        # malloc, kept until the thread ends.
        buffer = _local.buffer = ffi.new("uint8_t[]", size)
    memory[0] = buffer
    return lib.ARGON2_OK


@ffi.callback("void(uint8_t *, size_t)")
def _free(memory, size) -> None:  # a C callback: (uint8_t *memory, size_t size)
    """The buffer stays with its thread; the library has already wiped it."""


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


class Argon2id:
    """Hash and verify argon2id PHC strings with fixed parameters for new hashes."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self.time_cost = time_cost
        self.memory_kib = memory_kib
        self.parallelism = parallelism
        # Only for its parameter comparison (check_needs_rehash); it never hashes here.
        self._reference = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=HASH_BYTES,
            salt_len=SALT_BYTES,
            type=Type.ID,
        )
        # Hashes made with these parameters begin so: read without parsing (every login
        # verifies one and asks whether it needs a rehash).
        self._prefix = f"$argon2id$v={ARGON2_VERSION}$m={memory_kib},t={time_cost},p={parallelism}$"
        self._lengths = (len(_b64encode(bytes(SALT_BYTES))), len(_b64encode(bytes(HASH_BYTES))))

    def _own(self, password_hash: str) -> tuple[str, str] | None:
        """(salt, hash) in base64 if ``password_hash`` was made with exactly these parameters."""
        if not password_hash.startswith(self._prefix):
            return None
        salt, _, digest = password_hash[len(self._prefix) :].partition("$")
        return (salt, digest) if (len(salt), len(digest)) == self._lengths else None

    def hash(self, password: str) -> str:
        """A new PHC string for ``password`` with a random salt."""
        salt = os.urandom(SALT_BYTES)
        raw = _raw(
            password.encode(),
            salt,
            self.time_cost,
            self.memory_kib,
            self.parallelism,
            HASH_BYTES,
        )
        return (
            f"$argon2id$v={ARGON2_VERSION}$m={self.memory_kib},t={self.time_cost},"
            f"p={self.parallelism}${_b64encode(salt)}${_b64encode(raw)}"
        )

    def verify(self, password_hash: str, password: str) -> bool:
        """True on a match; VerifyMismatchError if not, InvalidHashError if malformed."""
        own = self._own(password_hash)
        try:
            if own is not None:
                costs = (self.time_cost, self.memory_kib, self.parallelism)
                salt_b64, hash_b64 = own
            else:
                params = extract_parameters(password_hash)
                if params.type is not Type.ID or params.version != ARGON2_VERSION:
                    raise InvalidHashError("not an argon2id (version 19) hash")
                costs = (params.time_cost, params.memory_cost, params.parallelism)
                *_, salt_b64, hash_b64 = password_hash.split("$")
            salt, expected = _b64decode(salt_b64), _b64decode(hash_b64)
        except (InvalidHashError, ValueError) as exc:
            raise InvalidHashError(str(exc)) from None
        raw = _raw(password.encode(), salt, *costs, len(expected))
        if not hmac.compare_digest(raw, expected):
            raise VerifyMismatchError()
        return True

    def check_needs_rehash(self, password_hash: str) -> bool:
        """True when ``password_hash`` was made with other parameters than these."""
        if self._own(password_hash) is not None:
            return False
        return self._reference.check_needs_rehash(password_hash)


def _raw(
    password: bytes, salt: bytes, time_cost: int, memory_kib: int, lanes: int, length: int
) -> bytes:
    """The raw argon2id output; the C call runs without the GIL."""
    out = ffi.new("uint8_t[]", length)
    pwd = ffi.new("uint8_t[]", password)
    salt_buffer = ffi.new("uint8_t[]", salt)
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": length,
            "pwd": pwd,
            "pwdlen": len(password),
            "salt": salt_buffer,
            "saltlen": len(salt),
            "secret": ffi.NULL,
            "secretlen": 0,
            "ad": ffi.NULL,
            "adlen": 0,
            "t_cost": time_cost,
            "m_cost": memory_kib,
            "lanes": lanes,
            "threads": lanes,
            "version": ARGON2_VERSION,
            "allocate_cbk": _allocate,
            "free_cbk": _free,
            "flags": lib.ARGON2_DEFAULT_FLAGS,
        },
    )
    result = lib.argon2_ctx(context, lib.Argon2_id)
    if result != lib.ARGON2_OK:
        # Out-of-range parameters in a stored hash: not a hash this service can check.
        raise InvalidHashError(error_to_str(result))
    return bytes(ffi.buffer(out, length))
