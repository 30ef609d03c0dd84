"""The key store: file permissions, encryption, rotation and retirement."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from idp.cli import main
from idp.keys.store import JWKS_MAX_AGE, KeyStore, KeyStoreError


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


def test_rotation_activates_next_retires_active_and_makes_a_new_next(db, tmp_path, clock):
    store = _fresh(db, tmp_path)
    store.ensure()
    before = {(r.alg, r.state): r.kid for r in store.rows()}
    clock.advance(timedelta(seconds=JWKS_MAX_AGE))  # the next key was published long enough
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


def idp(db, keys_dir, *args: str):
    """An `idp` command run in this process, on the test's clock."""
    env = {"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)}
    return CliRunner().invoke(main, list(args), env=env, obj=db.clock)


def states(db, keys_dir) -> dict[str, str]:
    return {r.kid: r.state for r in KeyStore(keys_dir, "", db).rows()}


def test_the_jwks_cache_lifetime_is_the_one_rotation_waits_for(client):
    assert client.get("/jwks.json").headers["cache-control"] == f"public, max-age={JWKS_MAX_AGE}"


def test_a_rotation_waits_until_the_next_key_was_published_as_long_as_rps_cache_the_jwks(
    db, keys_dir, clock
):
    assert idp(db, keys_dir, "keys", "rotate", "--force").exit_code == 0  # next keys made now
    made = states(db, keys_dir)

    clock.advance(timedelta(seconds=JWKS_MAX_AGE - 10))
    refused = idp(db, keys_dir, "keys", "rotate")
    assert refused.exit_code == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("idp: the next RS256 key "), line
    assert f"may cache the key set for {JWKS_MAX_AGE} s" in line
    assert line.endswith("or with --force in an emergency"), line
    assert states(db, keys_dir) == made, "a refused rotation changed nothing"

    clock.advance(timedelta(seconds=15))  # past the max-age and the servers' poll interval
    assert idp(db, keys_dir, "keys", "rotate").exit_code == 0
    assert states(db, keys_dir) != made

    again = idp(db, keys_dir, "keys", "rotate", "--alg", "ES256")  # back to back
    assert again.exit_code == 1
    assert again.stderr.startswith("idp: the next ES256 key ")


def test_force_rotates_back_to_back_in_an_emergency(db, keys_dir):
    first = idp(db, keys_dir, "keys", "rotate", "--force")
    second = idp(db, keys_dir, "keys", "rotate", "--force")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.stdout.startswith("idp: now active: ")
