"""The migrations create exactly the schema the models describe."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, make_url, select, text, update

from idp.audit import events as audit
from idp.db.engine import Database
from idp.db.migrate import pending
from idp.db.models import AuditEvent, AuditHead, Base


def test_migrated_schema_matches_the_models(_db):
    with _db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], "models and migrations disagree: write a migration"


def test_a_migrated_database_has_nothing_pending(_db):
    assert not pending(_db.engine)


def test_migrations_form_one_line_of_history(_db):
    from alembic.script import ScriptDirectory

    from idp.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(_db.url))
    assert len(script.get_heads()) == 1, "give a new migration down_revision = the current head"


def test_every_migration_downgrades_and_upgrades_again(tmp_path):
    from alembic import command

    from idp.db.engine import Database
    from idp.db.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path}/roundtrip.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    db = Database(url)
    try:
        assert not pending(db.engine)
    finally:
        db.dispose()


def test_the_heads_read_from_the_files_are_alembics_heads(_db):
    from alembic.script import ScriptDirectory

    from idp.db.migrate import alembic_config, script_heads

    assert script_heads() == set(ScriptDirectory.from_config(alembic_config(_db.url)).get_heads())


def test_a_database_behind_the_files_or_never_migrated_is_pending(tmp_path):
    from alembic import command

    from idp.db.engine import Database
    from idp.db.migrate import alembic_config

    url = f"sqlite:///{tmp_path}/behind.db"
    database = Database(url)
    try:
        assert pending(database.engine)
        command.upgrade(alembic_config(url), "0001")
        assert pending(database.engine)
    finally:
        database.dispose()


# -- 0005: the audit chain's personal fields sealed --------------------------------------


@pytest.fixture
def scratch_url(tmp_path) -> Iterator[str]:
    """An empty database of the kind under test, for migrating step by step: an SQLite
    file, or a PostgreSQL database of its own beside IDP_TEST_DATABASE_URL's."""
    url = os.environ.get("IDP_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path}/scratch.db"
        return
    server = make_url(url)
    name = f"{server.database}_scratch"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _old_body(row: dict) -> bytes:
    """What an audit event's hash covered before 0005 (its account and address too)."""
    names = ("event", "actor", "account_id", "client_id", "ip", "data")
    body = {"at": row["at"].isoformat(), **{name: row[name] for name in names}}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _write_old_chain(url: str, tampered: int | None = None) -> tuple[list[dict], bytes]:
    """A chain as written before 0005: two citizens' events and one without an account
    (the ``tampered``-th edited afterwards); its rows and the head's hash."""
    at = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    rows = [
        {"event": "account.registered", "account_id": 1, "ip": "198.51.100.10", "data": {}},
        {"event": "login.failure", "account_id": None, "ip": "203.0.113.7", "data": {}},
        {"event": "login.success", "account_id": 2, "ip": "198.51.100.11", "data": {"n": 1}},
        {"event": "client.added", "account_id": None, "ip": None, "data": {"name": "App"}},
        {"event": "login.success", "account_id": 1, "ip": "198.51.100.10", "data": {"n": 2}},
    ]
    events, head = AuditEvent.__table__, AuditHead.__table__
    database = Database(url)
    prev = b"\x00" * 32
    try:
        with database.engine.begin() as connection:
            for n, row in enumerate(rows):
                row.update(at=at + timedelta(minutes=n), actor=None, client_id=None)
                row["hash"] = hashlib.sha256(prev + _old_body(row)).digest()
                row["prev_hash"] = prev
                row["id"] = connection.execute(
                    insert(events).values(**row).returning(events.c.id)
                ).scalar_one()
                prev = row["hash"]
            connection.execute(update(head).values(last_id=rows[-1]["id"], last_hash=prev))
            if tampered is not None:
                connection.execute(
                    update(events)
                    .where(events.c.id == rows[tampered]["id"])
                    .values(data={"edited": True})
                )
    finally:
        database.dispose()
    return rows, prev


def _upgraded_to(url: str, revision: str) -> Database:
    from alembic import command

    from idp.db.migrate import alembic_config

    command.upgrade(alembic_config(url), revision)
    return Database(url)


def test_a_chain_from_before_the_seals_verifies_after_the_upgrade_and_can_be_erased(
    scratch_url,
):
    _upgraded_to(scratch_url, "0004").dispose()
    rows, old_head = _write_old_chain(scratch_url)
    database = _upgraded_to(scratch_url, "heads")
    try:
        with database.unit_of_work() as session:
            assert audit.verify(session) is None
            events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
            assert [(e.account_id, e.ip, e.data) for e in events[:-1]] == [
                (row["account_id"], row["ip"], row["data"]) for row in rows
            ]
            assert [e.seal is None for e in events[:-1]] == [False, False, False, True, False]
            rechained = events[-1]
            assert (rechained.event, rechained.data) == (
                audit.RECHAINED,
                {"events": 5, "previous_head": old_head.hex(), "broken_at": None},
            )
            assert audit.erase_personal_data(session, 1) == 2
            audit.record(session, "login.success", account_id=2, ip="198.51.100.11")
        with database.unit_of_work() as session:
            assert audit.verify(session) is None
            for event in session.scalars(select(AuditEvent)):
                values = [getattr(event, c.key) for c in AuditEvent.__table__.columns]
                assert "198.51.100.10" not in repr(values) and event.account_id != 1
    finally:
        database.dispose()


def test_a_chain_broken_before_the_upgrade_stays_reported_after_it(scratch_url):
    _upgraded_to(scratch_url, "0004").dispose()
    rows, _ = _write_old_chain(scratch_url, tampered=2)
    database = _upgraded_to(scratch_url, "heads")
    try:
        with database.unit_of_work() as session:
            assert audit.verify(session) == rows[2]["id"]
    finally:
        database.dispose()


def test_downgrading_chains_the_events_again_as_before_the_seals(scratch_url):
    from alembic import command

    from idp.db.migrate import alembic_config

    _upgraded_to(scratch_url, "0004").dispose()
    _write_old_chain(scratch_url)
    database = _upgraded_to(scratch_url, "heads")
    try:
        with database.unit_of_work() as session:
            audit.record(session, "login.success", account_id=2, ip="198.51.100.11")
            audit.erase_personal_data(session, 1)
    finally:
        database.dispose()
    command.downgrade(alembic_config(scratch_url), "0004")
    database = Database(scratch_url)
    try:
        events, head = AuditEvent.__table__, AuditHead.__table__
        columns = [events.c[name] for name in ("id", "at", "event", "actor", "client_id", "data")]
        columns += [events.c[name] for name in ("account_id", "ip", "prev_hash", "hash")]
        with database.engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(select(*columns).order_by("id"))]
            last_hash = connection.execute(select(head.c.last_hash)).scalar_one()
    finally:
        database.dispose()
    prev = b"\x00" * 32
    for row in rows:
        assert row["prev_hash"] == prev
        assert row["hash"] == hashlib.sha256(prev + _old_body(row)).digest()
        prev = row["hash"]
    assert last_hash == prev and len(rows) == 8


# -- 0006: kinds of principal -------------------------------------------------------------


def test_accounts_and_sessions_from_before_principal_kinds_are_citizens(scratch_url):
    _upgraded_to(scratch_url, "0005").dispose()
    engine = create_engine(scratch_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (id, subject, email, proofing_level, locale, "
                    "created_at, updated_at) VALUES (1, 's', 'a@example.de', 'low', 'de', :t, :t)"
                ),
                {"t": now},
            )
            connection.execute(
                text(
                    "INSERT INTO login_sessions (token_digest, sid, account_id, created_at, "
                    "auth_time, methods, last_seen_at, expires_at) "
                    "VALUES (:d, 'sid', 1, :t, :t, '[]', :t, :t)"
                ),
                {"d": b"\x01" * 32, "t": now},
            )
        _upgraded_to(scratch_url, "heads").dispose()
        with engine.connect() as connection:
            kinds = [
                connection.execute(text("SELECT kind FROM accounts")).scalar_one(),
                connection.execute(text("SELECT kind FROM login_sessions")).scalar_one(),
            ]
    finally:
        engine.dispose()
    assert kinds == ["citizen", "citizen"]
