"""The key store: file permissions, encryption, rotation and retirement."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization

from idp.keys.store import KeyStore, KeyStoreError


@pytest.fixture
def store(db, tmp_path):
    return KeyStore(tmp_path / "keys", "", db)


def _fresh(db, tmp_path, passphrase=""):
    from sqlalchemy import delete

    from idp.db.models import SigningKey

    with db.unit_of_work() as session:
        session.execute(delete(SigningKey))
    return KeyStore(tmp_path / "keys", passphrase, db)


def test_private_key_files_are_readable_by_the_owner_only(db, tmp_path):
    store = _fresh(db, tmp_path)
    created = store.ensure()
    assert len(created) == 4
    for kid in created:
        mode = stat.S_IMODE((tmp_path / "keys" / f"{kid}.pem").stat().st_mode)
        assert mode == 0o600


def test_key_files_are_encrypted_with_the_passphrase(db, tmp_path):
    store = _fresh(db, tmp_path, passphrase="correct horse")
    kid = store.ensure()[0]
    pem = (tmp_path / "keys" / f"{kid}.pem").read_bytes()
    assert b"ENCRYPTED" in pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    store.load()
    assert store.loaded
    with pytest.raises(KeyStoreError, match="IDP_KEYS_PASSPHRASE"):
        KeyStore(tmp_path / "keys", "wrong", db).load()


def test_rotation_activates_next_retires_active_and_makes_a_new_next(db, tmp_path):
    store = _fresh(db, tmp_path)
    store.ensure()
    before = {(r.alg, r.state): r.kid for r in store.rows()}
    store.rotate("ES256")
    after = {r.kid: r.state for r in store.rows()}
    assert after[before[("ES256", "active")]] == "retired"
    assert after[before[("ES256", "next")]] == "active"
    assert after[before[("RS256", "active")]] == "active", "other algorithms stay"
    assert sum(1 for s in after.values() if s == "next") == 2


def test_retiring_an_active_key_rotates_past_it_and_removing_unpublishes_it(db, tmp_path):
    store = _fresh(db, tmp_path)
    store.ensure()
    store.load()
    active = store.active("RS256").kid
    assert store.retire(active) == "retired"
    store.load()
    assert store.active("RS256").kid != active
    assert active in {k["kid"] for k in store.jwks["keys"]}
    assert store.retire(active) == "removed"
    store.load()
    assert active not in {k["kid"] for k in store.jwks["keys"]}
    assert not (tmp_path / "keys" / f"{active}.pem").exists()
    with pytest.raises(KeyStoreError, match="no such key"):
        store.retire(active)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_signed_tokens_verify_with_the_published_keys(db, tmp_path, alg):
    from joserfc import jwt
    from joserfc.errors import BadSignatureError

    store = _fresh(db, tmp_path)
    store.ensure()
    store.load()
    claims = {"iss": "https://idp.example.de", "sub": "ä-1", "exp": 2_000_000_000, "amr": ["pwd"]}
    token = store.sign(claims, alg, "at+jwt")
    decoded = jwt.decode(token, store.public_keyset(), algorithms=[alg])
    assert decoded.claims == claims
    assert decoded.header == {"alg": alg, "kid": store.active(alg).kid, "typ": "at+jwt"}
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(BadSignatureError):
        jwt.decode(tampered, store.public_keyset(), algorithms=[alg])
