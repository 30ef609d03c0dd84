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
