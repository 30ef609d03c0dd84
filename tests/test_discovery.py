"""Discovery and JWKS: what they publish matches the settings and the key store."""

from __future__ import annotations

import time

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.keys.store import KeyStore


def test_discovery_names_the_configured_issuer_and_jwks(client, settings):
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    metadata = response.json()
    assert metadata["issuer"] == settings.issuer
    assert metadata["jwks_uri"] == f"{settings.issuer}/jwks.json"


def test_rfc8414_metadata_is_served_at_its_own_well_known_path(client):
    oidc = client.get("/.well-known/openid-configuration").json()
    oauth = client.get("/.well-known/oauth-authorization-server").json()
    assert oauth == oidc


def test_discovery_answers_conditional_requests_with_304(client):
    first = client.get("/.well-known/openid-configuration")
    again = client.get(
        "/.well-known/openid-configuration", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


def test_jwks_publishes_the_active_and_next_key_of_each_algorithm(client, services):
    response = client.get("/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    keys = response.json()["keys"]
    assert {(k["alg"], k["kty"]) for k in keys} == {("RS256", "RSA"), ("ES256", "EC")}
    assert len(keys) == 4
    stored = {row.kid for row in services.keys.rows()}
    assert {k["kid"] for k in keys} == stored
    for key in keys:
        assert "d" not in key and "p" not in key, "private parts must never be published"


def test_jwks_of_a_real_server_over_the_network(live_server):
    response = httpx.get(f"{live_server.url}/jwks.json")
    assert response.status_code == 200
    assert KeySet.import_key_set(response.json()).keys


def test_token_signed_before_rotation_verifies_after_it(live_server, db, keys_dir):
    store = KeyStore(keys_dir, "", db)
    store.load()
    before = store.sign({"sub": "a"}, "ES256")
    old_kid = store.active("ES256").kid

    new_active = store.rotate(force=True)
    store.load()

    for _ in range(50):  # the server notices the rotation within its poll interval
        jwks = httpx.get(f"{live_server.url}/jwks.json").json()
        if {k["kid"] for k in jwks["keys"]} >= set(new_active) | {old_kid}:
            break
        time.sleep(0.1)
    published = {k["kid"] for k in jwks["keys"]}
    assert old_kid in published and set(new_active) <= published
    keyset = KeySet.import_key_set(jwks)
    assert jwt.decode(before, keyset).claims == {"sub": "a"}
    after = store.sign({"sub": "b"}, "ES256")
    assert jwt.decode(after, keyset).claims == {"sub": "b"}
    assert store.active("ES256").kid != old_kid


def test_metadata_is_public_cacheable_and_carries_the_security_headers(client):
    response = client.get("/.well-known/openid-configuration")
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert int(response.headers["content-length"]) == len(response.content)


def test_metadata_and_keys_answer_only_get(client):
    for path in ("/.well-known/openid-configuration", "/jwks.json"):
        response = client.post(path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
