"""argon2id over a reused buffer: interchangeable with argon2-cffi's hashes, strict on input."""

from __future__ import annotations

import threading

import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from idp.accounts import argon2id
from idp.accounts.argon2id import Argon2id

FAST = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


def reference(time_cost: int = 1, memory_kib: int = 1024, parallelism: int = 1) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


@pytest.mark.parametrize("password", ["correct horse battery staple", "", "Grüße aus Köln ✓"])
def test_hashes_are_interchangeable_with_argon2_cffi(password):
    ours = Argon2id(**FAST)
    theirs = reference()
    assert theirs.verify(ours.hash(password), password)
    assert ours.verify(theirs.hash(password), password)


def test_a_hash_carries_its_parameters_and_a_fresh_salt():
    ours = Argon2id(time_cost=2, memory_kib=2048, parallelism=2)
    first, second = ours.hash("same"), ours.hash("same")
    assert first.startswith("$argon2id$v=19$m=2048,t=2,p=2$")
    assert first != second
    assert ours.verify(first, "same") and ours.verify(second, "same")


def test_a_wrong_password_is_a_mismatch():
    ours = Argon2id(**FAST)
    with pytest.raises(VerifyMismatchError):
        ours.verify(ours.hash("right"), "wrong")


def test_hashes_with_other_parameters_still_verify_and_need_a_rehash():
    old = Argon2id(time_cost=1, memory_kib=2048, parallelism=1).hash("pw")
    ours = Argon2id(**FAST)
    assert ours.verify(old, "pw")
    assert ours.check_needs_rehash(old)
    assert not ours.check_needs_rehash(ours.hash("pw"))


@pytest.mark.parametrize(
    "theirs",
    [
        {},  # the same parameters: no rehash
        {"salt_len": 8},
        {"hash_len": 16},
        {"memory_cost": 2048},
        {"time_cost": 2},
        {"parallelism": 2},
    ],
    ids=["same", "salt_len", "hash_len", "memory", "time", "lanes"],
)
def test_reading_our_own_parameters_without_parsing_agrees_with_argon2_cffi(theirs):
    ours = Argon2id(**FAST)
    stored = PasswordHasher(
        **{"time_cost": 1, "memory_cost": 1024, "parallelism": 1, "type": Type.ID, **theirs}
    ).hash("pw")
    assert ours.check_needs_rehash(stored) is bool(theirs)
    assert ours.check_needs_rehash(stored) == reference().check_needs_rehash(stored)
    assert ours.verify(stored, "pw")
    with pytest.raises(VerifyMismatchError):
        ours.verify(stored, "other")


@pytest.mark.parametrize(
    "stored",
    [
        "garbage",
        "",
        "$argon2id$v=19$m=1024,t=1,p=1$!!!!$abcd",
        "$argon2id$v=19$m=1024,t=1,p=1$" + "!" * 22 + "$" + "A" * 43,  # our form, not base64
        "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=16$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    ],
)
def test_a_malformed_or_foreign_hash_is_refused(stored):
    with pytest.raises(InvalidHashError):
        Argon2id(**FAST).verify(stored, "pw")


def test_each_thread_reuses_one_buffer_across_hashes():
    ours = Argon2id(**FAST)
    seen: list[object] = []

    def hash_twice() -> None:
        for _ in range(2):
            ours.hash("pw")
            seen.append(argon2id._local.buffer)

    worker = threading.Thread(target=hash_twice)
    worker.start()
    worker.join()
    assert len(seen) == 2 and seen[0] is seen[1]
    hash_twice()
    assert seen[2] is seen[3] and seen[2] is not seen[0]
