"""Token, introspection and revocation endpoints for programs (in-process over HTTP)."""

from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from litestar.testing import TestClient
from sqlalchemy import func, select

from idp.app import create_app
from idp.db.models import Grant, RefreshToken
from idp.oidc.tokens import VERIFIED_CACHE_SIZE
from tests.conftest import make_settings
from tests.oidc import factories


def service_client(db, **fields):
    return factories.client(
        db,
        name="Fachverfahren",
        grant_types=["client_credentials"],
        scopes=["profile"],
        redirect_uris=[],
        **fields,
    )


def test_client_credentials_issues_an_rfc9068_jwt_and_writes_nothing(client, db, services):
    info = service_client(db)
    response = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    token = jwt.decode(body["access_token"], services.keys.public_keyset(), algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    assert token.claims["sub"] == info.client_id == token.claims["client_id"]
    assert token.claims["scope"] == "profile"
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 0
        assert session.scalar(select(func.count()).select_from(RefreshToken)) == 0


def test_client_credentials_refuses_a_scope_beyond_the_registration(client, db):
    info = service_client(db)
    response = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "email"},
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_an_unknown_grant_type_is_unsupported(client, db):
    info = service_client(db)
    response = client.post(
        "/token", data={"grant_type": "password"}, auth=(info.client_id, info.client_secret)
    )
    assert response.json()["error"] == "unsupported_grant_type"


def test_client_secret_post_works_for_a_client_registered_so(client, db):
    info = service_client(db, token_endpoint_auth_method="client_secret_post")
    data = {"grant_type": "client_credentials", "client_id": info.client_id}
    ok = client.post("/token", data={**data, "client_secret": info.client_secret})
    assert ok.status_code == 200
    basic = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(info.client_id, info.client_secret),
    )
    assert basic.status_code == 401, "a client authenticates only with its registered method"


def test_private_key_jwt_authenticates_and_refuses_a_replayed_assertion(client, db, settings):
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    public = {"keys": [key.as_dict(private=False)]}
    info = factories.client(
        db,
        grant_types=["client_credentials"],
        scopes=["profile"],
        redirect_uris=[],
        token_endpoint_auth_method="private_key_jwt",
        jwks=public,
    )
    now = int(time.time())
    claims = {
        "iss": info.client_id,
        "sub": info.client_id,
        "aud": f"{settings.issuer}/token",
        "iat": now,
        "exp": now + 60,
        "jti": "assertion-1",
    }
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key)
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert client.post("/token", data=data).status_code == 200
    replay = client.post("/token", data=data)
    assert replay.status_code in (400, 401)
    assert replay.json()["error"] == "invalid_client"


def test_introspection_reports_active_then_inactive_after_revocation(client, db):
    info = service_client(db)
    auth = (info.client_id, info.client_secret)
    token = client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "profile"}, auth=auth
    ).json()["access_token"]
    active = client.post("/introspect", data={"token": token}, auth=auth).json()
    assert active["active"] is True
    assert active["client_id"] == info.client_id and active["scope"] == "profile"
    assert client.post("/revoke", data={"token": token}, auth=auth).status_code == 200
    assert client.post("/introspect", data={"token": token}, auth=auth).json() == {"active": False}


def test_introspection_of_another_clients_token_is_inactive(client, db):
    mine = service_client(db)
    other = service_client(db)
    token = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(mine.client_id, mine.client_secret),
    ).json()["access_token"]
    answer = client.post(
        "/introspect", data={"token": token}, auth=(other.client_id, other.client_secret)
    )
    assert answer.json() == {"active": False}


def test_revoking_an_unknown_token_is_fine_per_rfc7009(client, db):
    info = service_client(db)
    response = client.post(
        "/revoke", data={"token": "not-a-token"}, auth=(info.client_id, info.client_secret)
    )
    assert response.status_code == 200


def test_userinfo_without_a_token_asks_for_bearer(client):
    response = client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_userinfo_refuses_a_client_credentials_token(client, db):
    info = service_client(db)
    token = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(info.client_id, info.client_secret),
    ).json()["access_token"]
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def _introspect(client, info, token):
    return client.post(
        "/introspect", data={"token": token}, auth=(info.client_id, info.client_secret)
    ).json()


def _cc_token(client, info):
    return client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(info.client_id, info.client_secret),
    ).json()["access_token"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_with_changed_claims_or_a_foreign_signature_is_inactive(client, db):
    info = service_client(db)
    token = _cc_token(client, info)
    assert _introspect(client, info, token)["active"] is True  # verified and remembered
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    changed = _b64(json.dumps({**claims, "scope": "profile email"}).encode())
    assert _introspect(client, info, f"{header}.{changed}.{signature}") == {"active": False}
    assert _introspect(client, info, f"{header}.{payload}.{signature}x") == {"active": False}
    assert _introspect(client, info, f"{header}.{payload}.{signature}==") == {"active": False}
    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    foreign = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
    forged = jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, foreign)
    assert _introspect(client, info, forged) == {"active": False}
    for alg, sig in (("none", ""), ("RS256", signature)):
        other_alg = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "at+jwt"}).encode())
        assert _introspect(client, info, f"{other_alg}.{payload}.{sig}") == {"active": False}


def test_a_remembered_token_still_expires(client, db, settings, clock):
    info = service_client(db)
    token = _cc_token(client, info)
    assert _introspect(client, info, token)["active"] is True
    clock.advance(timedelta(seconds=settings.access_token_seconds + 1))
    assert _introspect(client, info, token) == {"active": False}


def test_the_verified_tokens_remembered_stay_bounded(client, db, services):
    # Each distinct token whose signature is checked is remembered: a worker answering new
    # access tokens all day keeps its memory flat only through this bound.
    info = service_client(db)
    tokens = services.oidc.tokens
    for _ in range(VERIFIED_CACHE_SIZE + 8):
        token, _ = tokens.access_token(info.client_id, info.client_id, "profile")
        assert _introspect(client, info, token)["active"] is True
    assert 0 < len(tokens._verified) <= VERIFIED_CACHE_SIZE


def test_tokens_of_a_removed_key_no_longer_verify(db, keys_dir, tmp_path, clock):
    # Removing a key deletes its file: this test works on a copy of the key folder.
    shutil.copytree(keys_dir, tmp_path / "keys")
    settings = make_settings(db.url, tmp_path / "keys")
    with TestClient(create_app(settings, clock=clock), base_url=settings.issuer) as client:
        _removed_key_test(client, db, client.app.state.services)


def _removed_key_test(client, db, services):
    info = service_client(db)
    token = _cc_token(client, info)
    assert _introspect(client, info, token)["active"] is True
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    services.keys.retire(kid)  # active -> retired: still published, still verifies
    services.keys.refresh_if_changed()
    assert _introspect(client, info, token)["active"] is True
    services.keys.retire(kid)  # retired -> removed
    services.keys.refresh_if_changed()
    assert _introspect(client, info, token) == {"active": False}


def test_protocol_answers_carry_no_store_and_the_security_headers(client, db):
    info = service_client(db)
    auth = (info.client_id, info.client_secret)
    form = {"grant_type": "client_credentials"}
    answers = [
        client.post("/token", data=form, auth=auth),
        client.post("/token", data=form, auth=(info.client_id, "wrong")),
        client.post("/introspect", data={"token": "abc"}, auth=auth),
        client.post("/revoke", data={"token": "abc"}, auth=auth),
        client.get("/userinfo"),
    ]
    for response in answers:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
    assert answers[0].headers["pragma"] == "no-cache"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/token", "POST, OPTIONS"),
        ("PUT", "/introspect", "POST, OPTIONS"),
        ("DELETE", "/revoke", "POST, OPTIONS"),
        ("PATCH", "/userinfo", "GET, POST, OPTIONS"),
    ],
)
def test_protocol_endpoints_refuse_other_methods_with_405_and_allow(client, method, path, allow):
    response = client.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))
    assert response.json()["error"] == "method_not_allowed"


def test_protocol_endpoints_answer_options_with_their_methods(client):
    response = client.options("/userinfo")
    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    assert set(client.options("/token").headers["allow"].split(", ")) == {"POST", "OPTIONS"}


def test_an_oversized_protocol_request_is_refused_with_413_json(client, db, settings):
    info = service_client(db)
    body = {"grant_type": "client_credentials", "x": "a" * settings.max_body_bytes}
    response = client.post("/token", data=body, auth=(info.client_id, info.client_secret))
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    chunks = (b"grant_type=client_credentials&x=" + b"a" * 4096 for _ in range(20))
    streamed = client.post(
        "/introspect",
        content=chunks,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(info.client_id, info.client_secret),
    )
    assert streamed.status_code == 413


def test_a_token_request_that_is_not_a_form_is_not_read(client, db):
    info = service_client(db)
    response = client.post(
        "/token",
        json={"grant_type": "client_credentials"},
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
