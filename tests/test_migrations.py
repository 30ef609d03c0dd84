"""The migrations create exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from idp.db.migrate import pending
from idp.db.models import Base


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


@pytest.fixture
def scratch_url(database_url: str, tmp_path) -> Iterator[str]:
    """An empty database of the test database's kind, for migrating step by step."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path}/scratch.db"
        return
    url = make_url(database_url)
    name = f"{url.database}_scratch"
    server = create_engine(url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_accounts_and_sessions_from_before_principal_kinds_are_citizens(scratch_url):
    from alembic import command

    from idp.db.migrate import alembic_config

    command.upgrade(alembic_config(scratch_url), "0004")
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
        command.upgrade(alembic_config(scratch_url), "head")
        with engine.connect() as connection:
            kinds = [
                connection.execute(text("SELECT kind FROM accounts")).scalar_one(),
                connection.execute(text("SELECT kind FROM login_sessions")).scalar_one(),
            ]
    finally:
        engine.dispose()
    assert kinds == ["citizen", "citizen"]
