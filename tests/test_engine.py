"""The database engine: SQLite writers queue in the process, PostgreSQL pings idle connections."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, event, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.accounts.sessions import token_digest
from idp.db import engine as engine_module
from idp.db import loads
from idp.db.engine import Database, Prebuilt, read_row, read_row_awaited
from idp.db.models import Account, CacheVersion, LoginSession
from tests.conftest import on_own_loop
from tests.oidc import factories


def _second_writer_waits_for_first(first_db: Database, second_db: Database, name: str) -> None:
    """``first_db`` holds a write transaction; ``second_db``'s writer, with SQLite's busy
    handler switched off, must wait for its commit and then commit too (+1, then +10)."""
    first_wrote, first_may_commit = threading.Event(), threading.Event()
    outcome: list[object] = []
    bump = update(CacheVersion).where(CacheVersion.name == name)

    def first() -> None:
        with first_db.unit_of_work() as session:
            session.execute(bump.values(version=CacheVersion.version + 1))
            first_wrote.set()
            first_may_commit.wait(10)

    def second() -> None:
        try:
            with second_db.unit_of_work() as session:
                # Without the writer queue SQLite would answer "database is locked" at
                # once: no busy handler waits here.
                session.execute(text("PRAGMA busy_timeout=0"))
                session.execute(bump.values(version=CacheVersion.version + 10))
            outcome.append("committed")
        except OperationalError as exc:
            outcome.append(exc)

    try:
        holder = threading.Thread(target=first)
        holder.start()
        assert first_wrote.wait(10)
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and outcome == []  # queued behind the first writer
        first_may_commit.set()
        holder.join(10)
        waiter.join(10)
        assert outcome == ["committed"]
        with first_db.unit_of_work() as session:
            assert session.get(CacheVersion, name).version == 11
    finally:
        first_may_commit.set()


def test_page_work_runs_on_the_event_loop_on_sqlite_and_in_a_worker_thread_on_postgresql(db):
    """SQLite answers in microseconds, a PostgreSQL round trip would hold the loop."""

    async def where() -> tuple[int, int, int]:
        def count_accounts() -> int:
            with db.unit_of_work() as session:
                return session.scalar(text("SELECT count(*) FROM accounts"))

        worker = await db.run_sync(threading.get_ident)
        return threading.get_ident(), worker, await db.run_sync(count_accounts)

    loop_thread, worker_thread, accounts = on_own_loop(where())
    assert accounts >= 0
    if db.dialect == "sqlite":
        assert worker_thread == loop_thread
    else:
        assert worker_thread != loop_thread


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(db):
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    with db.unit_of_work() as session:
        session.add(CacheVersion(name="writers", version=0))
    database = Database(db.url)
    try:
        _second_writer_waits_for_first(database, database, "writers")
    finally:
        database.dispose()


def test_sqlite_writers_of_two_processes_queue_on_the_lock_file(db, tmp_path):
    """Worker processes of a node queue on ``flock``: a second process's writer waits for
    the first one's commit instead of failing or sleeping in SQLite's busy handler."""
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # flock belongs to an open file: two Databases in one process hold two, as two
    # worker processes would.
    first_process, second_process = Database(url), Database(url)
    try:
        with first_process.unit_of_work() as session:
            CacheVersion.__table__.create(session.connection())
            session.add(CacheVersion(name="processes", version=0))
        _second_writer_waits_for_first(first_process, second_process, "processes")
        assert (tmp_path / "shared.db.writer").exists()
    finally:
        first_process.dispose()
        second_process.dispose()


def _backend_pid(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.scalar(text("SELECT pg_backend_pid()"))


def _terminate(db: Database, pid: int) -> None:
    with db.engine.connect() as connection:
        connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_postgresql_connection_that_sat_idle_is_pinged_and_replaced(db, monkeypatch):
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    database = Database(db.url)
    try:
        dead = _backend_pid(database)
        _terminate(db, dead)
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        assert _backend_pid(database) != dead
    finally:
        database.dispose()


def test_a_postgresql_connection_used_a_moment_ago_is_not_pinged(db, monkeypatch):
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    database = Database(db.url)
    try:
        dead = _backend_pid(database)
        _terminate(db, dead)
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 3600.0)
        # No ping: the first use finds the connection dead, and the pool is renewed.
        with pytest.raises(OperationalError):
            _backend_pid(database)
        assert _backend_pid(database) != dead
    finally:
        database.dispose()


def test_a_prebuilt_statement_converts_values_by_column_type_and_raises_sqlalchemy_errors(
    db, clock
):
    sessions = LoginSession.__table__
    opened = Prebuilt(insert(sessions).returning(sessions.c.id))
    found = Prebuilt(
        select(sessions.c.created_at, sessions.c.methods).where(sessions.c.sid == "s1")
    )
    account_id = factories.account(db)
    now = clock.now()
    values = {
        "token_digest": b"\x01" * 32,
        "sid": "s1",
        "account_id": account_id,
        "created_at": now,
        "auth_time": now,
        "methods": [{"method": "pwd"}],
        "last_seen_at": now,
        "expires_at": now,
    }
    with db.unit_of_work() as session:
        (row,) = opened.execute(session, values)
        assert session.get(LoginSession, row.id).sid == "s1"
        (read,) = found.execute(session, {})
        # As the ORM reads them: an aware UTC datetime, JSON decoded.
        assert read.created_at == now and read.created_at.tzinfo is not None
        assert read.methods == [{"method": "pwd"}]
    with pytest.raises(IntegrityError), db.unit_of_work() as session:
        opened.execute(session, values)  # the same token digest and sid again


def test_an_entity_loaded_by_a_prebuilt_statement_is_the_sessions_own(db, clock):
    # PrebuiltLoad: the object it attaches has every column as the ORM loads it, is the
    # object the session hands out for that key, and its changes are flushed as those of
    # a loaded object: only what changed is written.
    account_id = factories.account(db)
    with db.unit_of_work() as session:
        token = "t" * 43
        by_orm = session.get(Account, account_id)
        expected = {prop.key: getattr(by_orm, prop.key) for prop in inspect(Account).column_attrs}
        session.add(
            LoginSession(
                token_digest=token_digest(token),
                sid="load-1",
                account_id=account_id,
                created_at=clock.now(),
                auth_time=clock.now(),
                methods=[{"method": "pwd", "at": "x"}],
                last_seen_at=clock.now(),
                expires_at=clock.now() + timedelta(hours=1),
            )
        )
    with db.unit_of_work() as session:
        account = loads.ACCOUNT.get(session, id=account_id)
        assert {key: getattr(account, key) for key in expected} == expected
        assert account in session and not session.dirty
        assert session.get(Account, account_id) is account  # no second copy
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:  # by primary key, as Session.get: the session's own object, without SQL
            assert loads.ACCOUNT.get(session, id=account_id) is account
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert statements == []
        assert loads.ACCOUNT.get(session, id=account_id + 1000) is None
        row = loads.LOGIN_SESSION_BY_DIGEST.get(session, token_digest=token_digest(token))
        assert row.sid == "load-1" and row.methods == [{"method": "pwd", "at": "x"}]
        assert row.expires_at.tzinfo is not None
    email_before = expected["email"]
    with db.unit_of_work() as session:
        account = loads.ACCOUNT.get(session, id=account_id)
        row = loads.LOGIN_SESSION_BY_DIGEST.get(session, token_digest=token_digest(token))
        # another unit of work changes a column meanwhile; this one's flush leaves it be
        with db.unit_of_work() as other:
            other.execute(
                update(Account).where(Account.id == account_id).values(email="new@example.de")
            )
        account.disabled_at = clock.now()
        row.methods = [*row.methods, {"method": "otp", "at": "y"}]
    with db.unit_of_work() as session:
        account = session.get(Account, account_id)
        assert account.disabled_at is not None
        assert account.email == "new@example.de" != email_before
        row = session.scalars(select(LoginSession).where(LoginSession.sid == "load-1")).one()
        assert [m["method"] for m in row.methods] == ["pwd", "otp"]


def test_a_prebuilt_select_outside_a_transaction_converts_parameters_and_values(db, clock):
    # read_row and read_row_awaited (on PostgreSQL its awaited connections) run the same
    # plan as execute: the statement's own literal ("s1") is sent, the datetime parameter
    # converted as its column type stores it, and the row's values read back by type.
    sessions = LoginSession.__table__
    live = Prebuilt(
        select(sessions.c.sid, sessions.c.expires_at, sessions.c.methods).where(
            sessions.c.sid == "s1", sessions.c.expires_at > bindparam("now")
        )
    )
    account_id = factories.account(db)
    now = clock.now()
    with db.unit_of_work() as session:
        session.add(
            LoginSession(
                token_digest=b"\x02" * 32,
                sid="s1",
                account_id=account_id,
                created_at=now,
                auth_time=now,
                methods=[{"method": "pwd"}],
                last_seen_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    expected = ("s1", now + timedelta(hours=1), [{"method": "pwd"}])
    assert read_row(db.engine, live, {"now": now}) == expected
    assert read_row(db.engine, live, {"now": now + timedelta(hours=2)}) is None

    async def awaited() -> tuple[object, object]:
        try:
            return (
                await read_row_awaited(db, live, {"now": now}),
                await read_row_awaited(db, live, {"now": now + timedelta(hours=2)}),
            )
        finally:
            if db.awaited is not None:
                await db.awaited.aclose()

    assert on_own_loop(awaited()) == (expected, None)


def _rows_in_the_database_file(path: Path, tmp_path: Path) -> int:
    """Rows of table ``wal_probe`` in the database file alone, without its WAL: what a
    checkpoint has copied there."""
    copy = tmp_path / f"copy-{time.monotonic_ns()}.db"
    # Copied by another process: closing a descriptor of the file here would drop every
    # POSIX lock this process's SQLite connections hold on it.
    subprocess.run(["cp", str(path), str(copy)], check=True)
    with contextlib.closing(sqlite3.connect(copy)) as connection:
        try:
            return connection.execute("SELECT count(*) FROM wal_probe").fetchone()[0]
        except sqlite3.OperationalError:  # the table itself is only in the WAL
            return 0
        except sqlite3.DatabaseError:  # "malformed": copied while a checkpoint wrote it
            return -1


def _write_pages(db: Database, rows: int) -> None:
    """About ``rows`` pages of 4 KiB through the WAL, in ten commits."""
    with db.unit_of_work() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS wal_probe (data BLOB)"))
    for _ in range(10):
        with db.unit_of_work() as session:
            session.execute(
                text("INSERT INTO wal_probe (data) VALUES (randomblob(3500))"),
                [{}] * (rows // 10),
            )


@pytest.mark.parametrize("background", [False, True], ids=["commits", "background"])
def test_the_wal_is_checkpointed_by_commits_or_by_the_owner_in_the_background(tmp_path, background):
    path = tmp_path / "wal.db"
    db = Database(f"sqlite:///{path}", background_checkpoints=background)
    try:
        with db.unit_of_work() as session:
            limit = session.execute(text("PRAGMA wal_autocheckpoint")).scalar()
        assert limit == (0 if background else engine_module.CHECKPOINT_PAGES)
        assert db.checkpoint() is False, "a small WAL is left alone"
        _write_pages(db, 2000)
        if background:
            assert _rows_in_the_database_file(path, tmp_path) == 0, "a commit checkpointed"
            assert db.checkpoint() is True
        assert _rows_in_the_database_file(path, tmp_path) == 2000
    finally:
        db.dispose()


def test_the_server_checkpoints_sqlites_wal_in_the_background(settings, tmp_path, clock):
    from litestar.testing import TestClient

    from idp.app import build_services, create_app

    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    services = build_services(settings, clock)
    path = Path(services.db.engine.url.database)
    try:
        with TestClient(create_app(settings, services), base_url=settings.issuer):
            _write_pages(services.db, 2000)
            deadline = time.monotonic() + 10
            while _rows_in_the_database_file(path, tmp_path) < 2000:
                assert time.monotonic() < deadline, "the WAL was not checkpointed"
                time.sleep(0.1)
        with services.db.unit_of_work() as session:
            session.execute(text("DROP TABLE wal_probe"))
    finally:
        services.db.dispose()


_CHECKPOINT_RACE = """
import sys, threading, time
from sqlalchemy import text
from idp.db import engine as engine_module
from idp.db.engine import Database
engine_module.CHECKPOINT_PAGES = 0  # every call asks SQLite for a checkpoint
for n in range(40):
    db = Database(f"sqlite:///{sys.argv[1]}/race{n}.db", background_checkpoints=True)
    with db.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (x BLOB)"))
        session.execute(text("INSERT INTO t SELECT randomblob(4000) FROM json_each('[1,2,3,4]')"))
    stop = threading.Event()

    def checkpoints():
        while not stop.is_set():
            db.checkpoint()
            with db.unit_of_work() as session:
                session.execute(text("INSERT INTO t VALUES (randomblob(4000))"))

    thread = threading.Thread(target=checkpoints)
    thread.start()
    time.sleep(0.01)
    db.dispose()
    stop.set()
    thread.join()
print("survived")
"""


def test_disposing_while_a_checkpoint_runs_in_a_thread_does_not_crash(tmp_path):
    # The server cancels its checkpoint task at shutdown, but not the thread the task is
    # waiting for; closing the checkpointer's connection under that thread crashed the
    # process (a segmentation fault in CI). Run in a process of its own: a crash here
    # would otherwise take the test run with it.
    done = subprocess.run(
        [sys.executable, "-c", _CHECKPOINT_RACE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout
