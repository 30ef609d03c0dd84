"""The refresh-token grant over HTTP: rotation, reuse, binding, narrowing, and what it refuses."""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select, text, update

from idp.db.awaited import APPLICATION_NAME
from idp.db.models import Account, AuditEvent, Grant
from tests.oidc import factories

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def world(live_server, db):
    """A server, a confidential client and a logged-in browser; returns the account id too."""
    info = factories.client(db)
    account_id = factories.account(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    return live_server, info, browser, account_id


def login(world, scope: str = "openid offline_access", **redeem_data) -> dict:
    """The token response of a code flow for the world's browser and client."""
    server, info, browser, _ = world
    query = urlencode(
        {
            "response_type": "code",
            "client_id": info.client_id,
            "redirect_uri": info.redirect_uri,
            "scope": scope,
            "state": "st",
            "nonce": "n",
        }
    )
    code = factories.callback_params(browser.open(f"{server.url}/authorize?{query}"))["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": info.redirect_uri}
    auth = None if redeem_data else (info.client_id, info.client_secret)
    response = httpx.post(f"{server.url}/token", data={**data, **redeem_data}, auth=auth)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(server, info, token: str, **extra) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return httpx.post(f"{server.url}/token", data=data, auth=(info.client_id, info.client_secret))


def access_claims(server, token: str) -> dict:
    keys = KeySet.import_key_set(httpx.get(f"{server.url}/jwks.json").json())
    return jwt.decode(token, keys).claims


def family_revocations(db, reason: str) -> list[AuditEvent]:
    with db.unit_of_work() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.event == "grant.revoked"))
        return [e for e in events if e.data.get("reason") == reason]


@pytest.mark.parametrize("subject_type", ["public", "pairwise"])
def test_a_refreshed_access_token_carries_the_logins_claims(live_server, db, subject_type):
    info = factories.client(db, subject_type=subject_type, first_party=True)
    account_id = factories.account(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    first = login((live_server, info, browser, account_id))
    refreshed = refresh(live_server, info, first["refresh_token"])
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["scope"] == "openid offline_access"
    before = access_claims(live_server, first["access_token"])
    after = access_claims(live_server, body["access_token"])
    for name in ("iss", "aud", "sub", "client_id", "scope", "grant_id", "auth_time", "amr"):
        assert after[name] == before[name], name
    assert after.get("acr") == before.get("acr")
    assert after["jti"] != before["jti"]
    with db.unit_of_work() as session:
        subject = session.get(Account, account_id).subject
    assert (after["sub"] == subject) is (subject_type == "public")


def test_each_refresh_token_works_once_along_a_rotation_chain(world):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    for _ in range(3):
        response = refresh(server, info, token)
        assert response.status_code == 200
        assert response.json()["refresh_token"] != token
        token = response.json()["refresh_token"]


def test_a_reused_refresh_token_is_audited_and_revokes_the_access_tokens(world, db, clock):
    server, info, _, _ = world
    first = login(world)
    rotated = refresh(server, info, first["refresh_token"]).json()
    # Within IDP_REFRESH_REUSE_GRACE_SECONDS a second use is a retry (test_refresh_grace.py).
    clock.advance(timedelta(seconds=server.settings.refresh_reuse_grace_seconds + 1))
    reuse = refresh(server, info, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    userinfo = httpx.get(
        f"{server.url}/userinfo", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert userinfo.status_code == 401
    [event] = family_revocations(db, "refresh_token_reused")
    assert event.client_id == info.client_id
    assert event.data["grant_id"] == access_claims(server, first["access_token"])["grant_id"]


def test_another_clients_refresh_token_is_refused_and_left_usable(world, db):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    other = factories.client(db, name="Other")
    stolen = refresh(server, other, token)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    unknown = refresh(server, other, secrets.token_urlsafe(32))
    assert stolen.json() == unknown.json(), "the answer must not tell that the token exists"
    assert refresh(server, info, token).status_code == 200, "the rightful client still can"
    assert family_revocations(db, "refresh_token_reused") == []


def test_an_unknown_refresh_token_is_refused(world):
    server, info, _, _ = world
    response = refresh(server, info, secrets.token_urlsafe(32))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"] == "unknown refresh token"


def test_an_expired_refresh_token_is_refused(world, clock):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    clock.advance(timedelta(days=server.settings.refresh_token_days, seconds=1))
    response = refresh(server, info, token)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"] == "refresh token expired"


def test_a_refresh_token_of_a_revoked_grant_is_refused(world):
    server, info, _, _ = world
    first = login(world)
    revoked = httpx.post(
        f"{server.url}/revoke",
        data={"token": first["refresh_token"]},
        auth=(info.client_id, info.client_secret),
    )
    assert revoked.status_code == 200
    response = refresh(server, info, first["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"] == "refresh token revoked"


def test_a_disabled_accounts_refresh_token_is_refused_and_its_grant_revoked(world, db, clock):
    server, info, _, account_id = world
    token = login(world)["refresh_token"]
    with db.unit_of_work() as session:
        session.execute(
            update(Account).where(Account.id == account_id).values(disabled_at=clock.now())
        )
    response = refresh(server, info, token)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"] == "account disabled"
    with db.unit_of_work() as session:
        session.execute(update(Account).where(Account.id == account_id).values(disabled_at=None))
        grant = session.scalar(select(Grant).where(Grant.account_id == account_id))
        assert grant.revoke_reason == "account_disabled"
    assert refresh(server, info, token).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("case", "reason"),
    [("unknown", "unknown"), ("expired", "expired"), ("another client", "wrong_client")],
)
def test_a_refused_refresh_logs_its_reason(world, db, caplog, clock, case, reason):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    presenter = info
    if case == "unknown":
        token = secrets.token_urlsafe(32)
    elif case == "expired":
        clock.advance(timedelta(days=server.settings.refresh_token_days, seconds=1))
    else:
        presenter = factories.client(db, name="Other")
    with caplog.at_level(logging.INFO, logger="idp.oidc.tokens"):
        response = refresh(server, presenter, token)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    [record] = [r for r in caplog.records if getattr(r, "reason", None) is not None]
    assert record.reason == reason
    assert record.client_id == presenter.client_id


def introspect(server, info, token: str) -> dict:
    response = httpx.post(
        f"{server.url}/introspect", data={"token": token}, auth=(info.client_id, info.client_secret)
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_an_introspected_refresh_token_is_active_until_rotated(world):
    server, info, _, _ = world
    first = login(world)
    active = introspect(server, info, first["refresh_token"])
    assert active["active"] is True
    assert active["client_id"] == info.client_id
    assert active["scope"] == "openid offline_access"
    assert active["sub"] == access_claims(server, first["access_token"])["sub"]
    assert active["iss"] == server.settings.issuer
    days = timedelta(days=server.settings.refresh_token_days).total_seconds()
    assert active["exp"] - active["iat"] == pytest.approx(days, abs=2)
    rotated = refresh(server, info, first["refresh_token"]).json()
    assert introspect(server, info, first["refresh_token"]) == {"active": False}
    assert introspect(server, info, rotated["refresh_token"])["active"] is True


@pytest.mark.parametrize("case", ["expired", "revoked", "another client", "account disabled"])
def test_an_introspected_refresh_token_is_inactive_when_a_refresh_would_be_refused(
    world, db, clock, case
):
    server, info, _, account_id = world
    token = login(world)["refresh_token"]
    asking = info
    if case == "expired":
        clock.advance(timedelta(days=server.settings.refresh_token_days, seconds=1))
    elif case == "revoked":
        auth = (info.client_id, info.client_secret)
        assert httpx.post(f"{server.url}/revoke", data={"token": token}, auth=auth).is_success
    elif case == "another client":
        asking = factories.client(db, name="Other")
    else:
        with db.unit_of_work() as session:
            session.execute(
                update(Account).where(Account.id == account_id).values(disabled_at=clock.now())
            )
    assert introspect(server, asking, token) == {"active": False}
    assert refresh(server, asking, token).json()["error"] == "invalid_grant"


def test_a_narrowed_refresh_keeps_offline_access_only_if_asked(world):
    server, info, _, _ = world
    token = login(world, "openid profile offline_access")["refresh_token"]
    narrowed = refresh(server, info, token, scope="profile offline_access")
    assert narrowed.status_code == 200
    body = narrowed.json()
    assert body["scope"] == "profile offline_access"
    assert access_claims(server, body["access_token"])["scope"] == "profile offline_access"
    last = refresh(server, info, body["refresh_token"], scope="openid")
    assert last.status_code == 200
    assert last.json()["scope"] == "openid" and "refresh_token" not in last.json()


def test_a_narrowing_beyond_the_grant_is_invalid_scope_and_keeps_the_token(world):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    wider = refresh(server, info, token, scope="openid email")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    assert refresh(server, info, token).status_code == 200


def test_a_private_key_jwt_client_refreshes(live_server, db, clock):
    """Its assertion's jti is written before the rotation: both in one request."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    info = factories.client(
        db, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [key.as_dict()]}
    )
    account_id = factories.account(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))

    def assertion() -> dict:
        now = int(time.time())
        claims = {
            "iss": info.client_id,
            "sub": info.client_id,
            "aud": f"{live_server.url}/token",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        signed = jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key)
        return {"client_id": info.client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": signed}  # fmt: skip

    token = login((live_server, info, browser, account_id), **assertion())["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": token}
    started = time.monotonic()
    rotated = httpx.post(f"{live_server.url}/token", data={**data, **assertion()}, timeout=30)
    assert rotated.status_code == 200, rotated.text
    assert time.monotonic() - started < 5, "the rotation did not wait on the request's own write"
    assert rotated.json()["refresh_token"] != token
    # A retry within the grace period, the assertion's jti written in the same request.
    retried = httpx.post(f"{live_server.url}/token", data={**data, **assertion()}, timeout=30)
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] == rotated.json()["refresh_token"]
    clock.advance(timedelta(seconds=live_server.settings.refresh_reuse_grace_seconds + 1))
    again = httpx.post(f"{live_server.url}/token", data={**data, **assertion()})
    assert again.json()["error"] == "invalid_grant"


def _awaited_queries(db) -> list[str]:
    """The last statement of each of the service's awaited PostgreSQL connections."""
    with db.engine.connect() as connection:
        return list(
            connection.scalars(
                text("SELECT query FROM pg_stat_activity WHERE application_name = :name"),
                {"name": APPLICATION_NAME},
            )
        )


def test_on_postgresql_the_rotation_and_an_introspection_are_awaited_on_the_event_loop(world, db):
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite answers from the process's own file")
    server, info, _, _ = world
    tokens = login(world)
    assert refresh(server, info, tokens["refresh_token"]).status_code == 200
    assert any("WITH consumed AS" in query for query in _awaited_queries(db))
    introspected = httpx.post(
        f"{server.url}/introspect",
        data={"token": tokens["access_token"]},
        auth=(info.client_id, info.client_secret),
    )
    assert introspected.json()["active"] is True
    assert any("revoked_access_tokens" in query for query in _awaited_queries(db))


def test_revoking_another_clients_tokens_answers_200_and_revokes_nothing(world, db):
    # RFC 7009 2.2: the answer must not tell whether the token exists. Another client's
    # valid token was answered 400 and an unknown one 200.
    server, info, _, _ = world
    tokens = login(world)
    other = factories.client(db, name="Andere App")
    for token in (tokens["refresh_token"], tokens["access_token"], "unknown-token"):
        answer = httpx.post(
            f"{server.url}/revoke",
            data={"token": token},
            auth=(other.client_id, other.client_secret),
        )
        assert (answer.status_code, answer.content) == (200, b"{}"), token
    userinfo = httpx.get(
        f"{server.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200
    assert refresh(server, info, tokens["refresh_token"]).status_code == 200
