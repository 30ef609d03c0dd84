"""The database engine: SQLite writers queue in the process, PostgreSQL pings idle connections."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from idp.db import engine as engine_module
from idp.db.engine import Database
from idp.db.models import CacheVersion


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(db):
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    with db.unit_of_work() as session:
        session.add(CacheVersion(name="writers", version=0))
    database = Database(db.url)
    first_wrote, first_may_commit = threading.Event(), threading.Event()
    outcome: list[object] = []

    def bump() -> None:
        with database.unit_of_work() as session:
            session.execute(
                update(CacheVersion)
                .where(CacheVersion.name == "writers")
                .values(version=CacheVersion.version + 1)
            )

    def first() -> None:
        with database.unit_of_work() as session:
            session.execute(update(CacheVersion).values(version=CacheVersion.version + 1))
            first_wrote.set()
            first_may_commit.wait(10)

    def second() -> None:
        try:
            with database.unit_of_work() as session:
                # Without the process's writer queue SQLite would answer "database is
                # locked" at once: no busy handler waits here.
                session.execute(text("PRAGMA busy_timeout=0"))
                session.execute(update(CacheVersion).values(version=CacheVersion.version + 1))
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
        bump()
        with db.unit_of_work() as session:
            assert session.get(CacheVersion, "writers").version == 3
    finally:
        first_may_commit.set()
        database.dispose()


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
