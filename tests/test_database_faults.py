"""A database that cannot take writes in time: a served app answers 503 with Retry-After
within its timeouts, /readyz says so within its bound, and the outage is logged once.

Writes are blocked by a lock the test holds, on the real database: on SQLite an open
write transaction of another connection, on PostgreSQL a lock on every table that
refuses writes (reads go on), as a stuck writer or a full disk would.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from idp.db.engine import Database
from idp.db.models import Base
from idp.db.timeouts import Timeouts, unavailable
from tests.accounts.conftest import FAST_HASH, STRONG, csrf_token
from tests.conftest import LiveServer, free_port, make_settings, on_own_loop
from tests.oidc import factories

LOCK_TIMEOUT = 1


@contextmanager
def writes_blocked(db) -> Iterator[None]:
    """Hold a lock that keeps every other connection from writing, until the block ends."""
    url = make_url(db.url)
    if db.dialect == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(url.set(drivername="postgresql").render_as_string(False))
        names = ", ".join(table.name for table in Base.metadata.sorted_tables)
        holder.execute(f"LOCK TABLE {names} IN SHARE MODE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


@contextmanager
def serving(db, keys_dir, tmp_path, **overrides) -> Iterator[httpx.Client]:
    port = free_port()
    values = {"db_lock_timeout_seconds": LOCK_TIMEOUT, "ready_timeout_seconds": 1, **overrides}
    settings = make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        mail_dir=tmp_path / "mail",
        **FAST_HASH,
        **values,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield http


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_registering_while_writes_are_blocked_answers_503_and_a_retry_registers(
    db, keys_dir, tmp_path
):
    with serving(db, keys_dir, tmp_path) as http:
        form = {
            "email": "paula@example.de",
            "password": STRONG,
            "privacy_consent": "yes",
            "csrf_token": csrf_token(http.get("/register").text),
        }
        with writes_blocked(db):
            refused, took = _timed(lambda: http.post("/register", data=form))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "in ein paar Sekunden noch einmal" in refused.text
        assert took < LOCK_TIMEOUT + 2

        retried = http.post("/register", data=form, follow_redirects=False)
        assert retried.status_code == 303
        assert retried.headers["location"].startswith("/verify-email?flow=")


def test_a_protocol_endpoint_that_writes_answers_503_temporarily_unavailable(
    db, keys_dir, tmp_path
):
    info = factories.client(
        db, grant_types=["client_credentials"], scopes=["profile"], redirect_uris=[]
    )
    auth = (info.client_id, info.client_secret)
    with serving(db, keys_dir, tmp_path) as http:
        grant = {"grant_type": "client_credentials", "scope": "profile"}
        token = http.post("/token", data=grant, auth=auth).json()["access_token"]
        with writes_blocked(db):
            refused, took = _timed(lambda: http.post("/revoke", data={"token": token}, auth=auth))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.json()["error"] == "temporarily_unavailable"
        assert took < LOCK_TIMEOUT + 2

        assert http.post("/revoke", data={"token": token}, auth=auth).status_code == 200
        assert http.post("/introspect", data={"token": token}, auth=auth).json() == {
            "active": False
        }


def test_readyz_answers_503_within_its_bound_while_writes_are_blocked(db, keys_dir, tmp_path):
    # The lock timeout is longer than the bound: the bound, not the database, ends the wait.
    with serving(db, keys_dir, tmp_path, db_lock_timeout_seconds=5) as http:
        assert http.get("/readyz").status_code == 200
        with writes_blocked(db):
            for _ in range(3):  # asked again while the first probe still waits
                answer, took = _timed(lambda: http.get("/readyz"))
                assert answer.status_code == 503
                # The bound ran out, or on PostgreSQL the probe's own timeout as well.
                assert answer.json()["database"] in ("no write within 1 s", "refused a write")
                assert took < 1.8
        deadline = time.monotonic() + 10
        while (ready := http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    db, keys_dir, tmp_path, caplog: pytest.LogCaptureFixture
):
    info = factories.client(
        db, grant_types=["client_credentials"], scopes=["profile"], redirect_uris=[]
    )
    auth = (info.client_id, info.client_secret)
    with serving(db, keys_dir, tmp_path) as http:
        grant = {"grant_type": "client_credentials", "scope": "profile"}
        token = http.post("/token", data=grant, auth=auth).json()["access_token"]
        with caplog.at_level(logging.WARNING, logger="idp.web"), writes_blocked(db):
            for _ in range(3):
                answer = http.post("/revoke", data={"token": token}, auth=auth)
                assert answer.status_code == 503
        with caplog.at_level(logging.WARNING, logger="idp.web"):
            assert http.get("/readyz").status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "idp.web"]
    assert len(messages) == 2, messages
    assert messages[0].startswith("database unavailable, answering 503")
    assert messages[1].startswith("database available again: 3 requests answered 503")


def test_every_connection_has_the_timeouts_it_was_given(db):
    database = Database(db.url, timeouts=Timeouts(connect=3, statement=7, lock=2))
    try:
        with database.engine.connect() as connection:
            if database.dialect == "sqlite":
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000
                return
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "2s"

        async def awaited() -> tuple:
            try:
                return (
                    await database.awaited.fetchone("SHOW statement_timeout", {}),
                    await database.awaited.fetchone("SHOW lock_timeout", {}),
                )
            finally:
                await database.awaited.aclose()

        assert on_own_loop(awaited()) == (("7s",), ("2s",))
    finally:
        database.dispose()


def test_a_statement_past_the_statement_timeout_is_an_unavailable_database(db):
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite's statements wait only for its lock")
    database = Database(db.url, timeouts=Timeouts(statement=1))
    try:
        with pytest.raises(Exception) as raised, database.engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(3)"))
        assert unavailable(raised.value)

        async def awaited() -> None:
            try:
                await database.awaited.fetchone("SELECT pg_sleep(3)", {})
            finally:
                await database.awaited.aclose()

        with pytest.raises(psycopg.errors.QueryCanceled) as raised:
            on_own_loop(awaited())
        assert unavailable(raised.value)
    finally:
        database.dispose()
