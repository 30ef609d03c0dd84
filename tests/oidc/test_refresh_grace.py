"""A refresh retried after a lost answer keeps its family (IDP_REFRESH_REUSE_GRACE_SECONDS).

The rotation commits, the answer never reaches the client (a timeout, a killed worker,
a stalled database), and the client presents the same token again. Within the grace
period that is a retry and gets the same successor; after it, or from another client,
it is not. Over HTTP against a served app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text

from idp.db.models import Grant
from idp.oidc.tokens import digest
from tests.conftest import LiveServer, free_port, make_settings, together
from tests.oidc import factories
from tests.oidc.test_refresh import access_claims, family_revocations, login, refresh

ROUNDS = 12


@pytest.fixture
def world(live_server, db):
    """A server, a confidential client and a logged-in browser; returns the account id too."""
    info = factories.client(db)
    account_id = factories.account(db)
    browser = factories.Browser(live_server.url)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    return live_server, info, browser, account_id


def userinfo(server, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return httpx.get(f"{server.url}/userinfo", headers=headers).status_code


def grace(server) -> timedelta:
    return timedelta(seconds=server.settings.refresh_reuse_grace_seconds)


def grant_revoked(db, grant_id: str) -> str | None:
    with db.unit_of_work() as session:
        return session.scalar(select(Grant.revoke_reason).where(Grant.id == grant_id))


def test_a_retry_within_the_grace_period_gets_the_same_successor_and_keeps_the_family(
    world, db, clock
):
    server, info, _, _ = world
    first = login(world)
    answered = refresh(server, info, first["refresh_token"])  # the answer the client lost
    assert answered.status_code == 200
    clock.advance(grace(server) - timedelta(seconds=2))
    retried = refresh(server, info, first["refresh_token"])
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["refresh_token"] == answered.json()["refresh_token"]
    assert body["access_token"] != answered.json()["access_token"]
    assert (
        access_claims(server, body["access_token"])["grant_id"]
        == (access_claims(server, first["access_token"])["grant_id"])
    )
    assert userinfo(server, body["access_token"]) == 200
    assert userinfo(server, answered.json()["access_token"]) == 200
    onward = refresh(server, info, body["refresh_token"])
    assert onward.status_code == 200, onward.text
    assert refresh(server, info, onward.json()["refresh_token"]).status_code == 200
    assert family_revocations(db, "refresh_token_reused") == []


def test_another_client_within_the_grace_period_is_refused_and_revokes_nothing(world, db):
    server, info, _, _ = world
    first = login(world)
    answered = refresh(server, info, first["refresh_token"]).json()
    other = factories.client(db, name="Andere App")
    stolen = refresh(server, other, first["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert family_revocations(db, "refresh_token_reused") == []
    assert userinfo(server, answered["access_token"]) == 200
    assert refresh(server, info, answered["refresh_token"]).status_code == 200


def test_reuse_after_the_grace_period_revokes_the_family_with_a_reason(world, db, caplog, clock):
    server, info, _, _ = world
    first = login(world)
    rotated = refresh(server, info, first["refresh_token"]).json()
    clock.advance(grace(server) + timedelta(seconds=1))
    with caplog.at_level(logging.WARNING, logger="idp.oidc.tokens"):
        reuse = refresh(server, info, first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json() == {"error": "invalid_grant", "error_description": "refresh token reused"}
    assert any("refresh token reused" in r.getMessage() for r in caplog.records)
    grant_id = access_claims(server, first["access_token"])["grant_id"]
    assert grant_revoked(db, grant_id) == "refresh_token_reused"
    assert refresh(server, info, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(server, rotated["access_token"]) == 401


def test_a_token_presented_again_after_its_successor_was_used_is_refused_not_revoked(world, db):
    # The late original request: its retry got the successor and the client moved on,
    # then the first request lands, still within the grace period. The client is gone,
    # the answer goes nowhere; it must not cost the family.
    server, info, _, _ = world
    first = login(world)
    answered = refresh(server, info, first["refresh_token"]).json()
    onward = refresh(server, info, answered["refresh_token"]).json()
    late = refresh(server, info, first["refresh_token"])
    assert late.status_code == 400
    assert late.json()["error_description"] == "refresh token already rotated"
    assert family_revocations(db, "refresh_token_reused") == []
    assert userinfo(server, onward["access_token"]) == 200
    assert refresh(server, info, onward["refresh_token"]).status_code == 200


def test_a_retried_narrowed_refresh_without_offline_access_answers_again(world):
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    for _ in range(2):
        answer = refresh(server, info, token, scope="openid")
        assert answer.status_code == 200, answer.text
        assert "refresh_token" not in answer.json()
        assert userinfo(server, answer.json()["access_token"]) == 200


def test_without_a_grace_period_a_second_presentation_revokes(live_server, db, keys_dir, clock):
    port = free_port()
    settings = make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        refresh_reuse_grace_seconds=0,
    )
    with LiveServer(settings, clock) as server:
        info = factories.client(db)
        account_id = factories.account(db)
        browser = factories.Browser(server.url)
        browser.log_in(factories.login_token(db, account_id, settings))
        first = login((server, info, browser, account_id))
        rotated = refresh(server, info, first["refresh_token"]).json()
        reuse = refresh(server, info, first["refresh_token"])
        assert reuse.json()["error_description"] == "refresh token reused"
        assert refresh(server, info, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert len(family_revocations(db, "refresh_token_reused")) == 1


def test_two_presentations_of_one_token_at_once_both_succeed_and_keep_one_chain(
    world, db, keys_dir, clock
):
    """Both get the same successor (so one chain stays live), round after round, through
    two servers on one database as two nodes would."""
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    port = free_port()
    other = make_settings(db.url, keys_dir, issuer=f"http://127.0.0.1:{port}", port=port)
    with LiveServer(other, clock) as second:
        for round_ in range(ROUNDS):
            answers = together(
                [lambda s=s, t=token: refresh(s, info, t) for s in (server, second, server)]
            )
            assert [a.status_code for a in answers] == [200] * 3, (round_, answers[0].text)
            successors = {a.json()["refresh_token"] for a in answers}
            assert len(successors) == 1, "one successor chain"
            for target, answer in zip((server, second, server), answers, strict=True):
                assert userinfo(target, answer.json()["access_token"]) == 200
            token = successors.pop()
    assert family_revocations(db, "refresh_token_reused") == []
    final = refresh(server, info, token)
    assert final.status_code == 200, final.text


def _hold_the_token(db, token: str, hold: threading.Event, held: threading.Event) -> None:
    """Keep the token's row (PostgreSQL) or the database (SQLite) locked until ``hold`` is set."""
    if db.dialect != "postgresql":
        # A connection of its own, outside SQLAlchemy's transaction handling.
        holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            held.set()
            hold.wait(10)
            holder.rollback()
        finally:
            holder.close()
        return
    with db.engine.connect() as connection:
        connection.execute(
            text("SELECT 1 FROM refresh_tokens WHERE token_digest = :d FOR UPDATE"),
            {"d": digest(token)},
        )
        held.set()
        hold.wait(10)
        connection.rollback()


def _used(db, token: str) -> bool:
    with db.engine.connect() as connection:
        used_at = connection.execute(
            text("SELECT used_at FROM refresh_tokens WHERE token_digest = :d"),
            {"d": digest(token)},
        ).scalar()
    return used_at is not None


def test_a_refresh_whose_answer_was_lost_to_a_stalled_database_is_retried(world, db):
    """The client gives up while the database stalls; the rotation commits afterwards; the
    client's retry gets the successor the lost answer carried, and the family lives."""
    server, info, _, _ = world
    token = login(world)["refresh_token"]
    hold, held = threading.Event(), threading.Event()
    locker = threading.Thread(target=_hold_the_token, args=(db, token, hold, held))
    locker.start()
    try:
        assert held.wait(5)
        data = {"grant_type": "refresh_token", "refresh_token": token}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{server.url}/token",
                data=data,
                auth=(info.client_id, info.client_secret),
                timeout=0.5,
            )
    finally:
        hold.set()
        locker.join(10)
    deadline = time.monotonic() + 10
    while not _used(db, token):  # the abandoned request commits its rotation
        assert time.monotonic() < deadline, "the stalled rotation never committed"
        time.sleep(0.05)
    retried = refresh(server, info, token)
    assert retried.status_code == 200, retried.text
    assert userinfo(server, retried.json()["access_token"]) == 200
    assert refresh(server, info, retried.json()["refresh_token"]).status_code == 200
    assert family_revocations(db, "refresh_token_reused") == []


@pytest.mark.faults
def test_a_refresh_whose_worker_was_killed_mid_request_is_retried(db, keys_dir, tmp_path):
    """`idp serve` with two workers; the request stalls on the database, its worker is
    killed (SIGKILL, as the OOM killer would), the master starts another. On PostgreSQL
    the orphaned statement still commits the rotation once the database moves on; either
    way the client's retry gets a working token and the family lives."""
    from tests.test_cli import serve_env, serving
    from tests.test_workers import listening_workers, wait_for_workers

    env = serve_env(tmp_path, IDP_WORKERS="2", IDP_DATABASE_URL=db.url, IDP_KEYS_DIR=str(keys_dir))
    port = int(env["IDP_PORT"])
    settings = make_settings(db.url, keys_dir, issuer=env["IDP_ISSUER"], port=port)
    with serving(env) as master:

        class Served:
            url = env["IDP_ISSUER"]

        info = factories.client(db)
        account_id = factories.account(db)
        browser = factories.Browser(Served.url)
        browser.log_in(factories.login_token(db, account_id, settings))
        token = login((Served, info, browser, account_id))["refresh_token"]
        workers = wait_for_workers(master.pid, port, 2)
        hold, held = threading.Event(), threading.Event()
        locker = threading.Thread(target=_hold_the_token, args=(db, token, hold, held))
        locker.start()
        try:
            assert held.wait(5)
            with pytest.raises(httpx.TimeoutException):
                refresh_data = {"grant_type": "refresh_token", "refresh_token": token}
                httpx.post(
                    f"{Served.url}/token",
                    data=refresh_data,
                    auth=(info.client_id, info.client_secret),
                    timeout=1,
                )
            for pid in workers:  # the one serving the request among them
                os.kill(pid, signal.SIGKILL)
        finally:
            hold.set()
            locker.join(10)
        deadline = time.monotonic() + 30
        while set(listening_workers(master.pid, port)) & set(workers) or (
            len(listening_workers(master.pid, port)) < 2
        ):
            assert time.monotonic() < deadline, "the master did not replace its workers"
            time.sleep(0.1)
        if db.dialect == "postgresql":
            deadline = time.monotonic() + 10
            while not _used(db, token):  # the orphaned statement commits after all
                assert time.monotonic() < deadline, "the orphaned rotation never committed"
                time.sleep(0.05)
        retried = refresh(Served, info, token)
        assert retried.status_code == 200, retried.text
        assert userinfo(Served, retried.json()["access_token"]) == 200
        assert refresh(Served, info, retried.json()["refresh_token"]).status_code == 200
    assert family_revocations(db, "refresh_token_reused") == []
