"""A database that cannot take writes in time: a served app answers 503 with Retry-After
within its timeouts, /readyz says so within its bound, and the outage is logged once.

Writes are blocked by a lock the test holds, on the real database: on SQLite an open
write transaction of another connection, on PostgreSQL a lock on every table that
refuses writes (reads go on), as a stuck writer or a full disk would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from idp.db.engine import Database
from idp.db.migrate import upgrade
from idp.db.models import Base, SigningKey
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
    with (
        LiveServer(settings, db.clock) as live,
        httpx.Client(base_url=live.url, timeout=30) as http,
    ):
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


POSTGRESQL_BIN = Path("/usr/lib/postgresql/15/bin")


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a process that exits mid-walk is skipped)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@pytest.fixture
def throwaway_postgresql(_key_rows) -> Iterator[tuple[str, Callable[[int], None]]]:
    """A PostgreSQL cluster of this test's own on a free port, migrated, with the test keys;
    gives its URL and a function sending a signal to its postmaster and every backend."""
    if os.geteuid() != 0 or not (POSTGRESQL_BIN / "initdb").exists():
        pytest.skip("needs PostgreSQL 15's initdb and root (to run it as postgres)")
    # Not under pytest's folder, which only root may enter.
    data = Path(tempfile.mkdtemp(prefix="idp-test-cluster-"))
    shutil.chown(data, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    initdb = ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"]
    subprocess.run(
        [*as_postgres, POSTGRESQL_BIN / "initdb", *initdb], check=True, capture_output=True
    )
    port = free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    # The server's output to a log file: on a pipe of ours it would hold the pipe open.
    log = data / "server.log"
    subprocess.run(
        [
            *as_postgres,
            POSTGRESQL_BIN / "pg_ctl",
            "-D",
            data,
            "-o",
            options,
            "-l",
            log,
            "-w",
            "-t",
            "30",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    postmaster = int((data / "postmaster.pid").read_text().split()[0])

    def signal_all(number: int) -> None:
        for pid in [postmaster, *_children_of(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        upgrade(url)
        database = Database(url)
        with database.unit_of_work() as session:
            session.execute(insert(SigningKey), _key_rows)
        database.dispose()
        yield url, signal_all
    finally:
        signal_all(signal.SIGCONT)
        subprocess.run(
            [*as_postgres, POSTGRESQL_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_a_frozen_postgresql_gives_503_within_the_timeouts_and_service_comes_back(
    throwaway_postgresql, keys_dir, tmp_path, db
):
    url, signal_all = throwaway_postgresql
    info = factories.client(
        Database(url), grant_types=["client_credentials"], scopes=["profile"], redirect_uris=[]
    )
    auth = (info.client_id, info.client_secret)
    port = free_port()
    settings = make_settings(
        url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        mail_dir=tmp_path / "mail",
        db_connect_timeout_seconds=1,
        db_statement_timeout_seconds=1,
        ready_timeout_seconds=1,
    )
    with (
        LiveServer(settings, db.clock) as live,
        httpx.Client(base_url=live.url, timeout=30) as http,
    ):
        grant = {"grant_type": "client_credentials", "scope": "profile"}
        token = http.post("/token", data=grant, auth=auth).json()["access_token"]
        assert http.post("/introspect", data={"token": token}, auth=auth).json()["active"]
        assert http.get("/readyz").status_code == 200

        signal_all(signal.SIGSTOP)  # the server's processes stop, its connections stay open
        try:
            ready, took = _timed(lambda: http.get("/readyz"))
            assert ready.status_code == 503 and took < 1.8
            # Awaited on the event loop: given up after the connect and statement timeouts.
            refused, took = _timed(
                lambda: http.post("/introspect", data={"token": token}, auth=auth)
            )
            assert refused.status_code == 503 and took < 3.5
            assert refused.json()["error"] == "temporarily_unavailable"
            assert refused.headers["retry-after"] == "5"
        finally:
            signal_all(signal.SIGCONT)

        deadline = time.monotonic() + 10
        while (ready := http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)
        assert http.post("/introspect", data={"token": token}, auth=auth).json()["active"]
