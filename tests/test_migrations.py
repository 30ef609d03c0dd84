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
