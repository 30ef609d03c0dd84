"""The migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

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
