"""Apply and check alembic migrations without an alembic.ini.

``pending`` runs at every start of every worker: it reads the revision ids from
the migration files and the database's ``alembic_version`` table itself rather
than importing alembic, which would stay in each worker's memory (11 MB) for
nothing.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at our migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest revision (every head)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "heads")


@cache
def script_heads() -> frozenset[str]:
    """The newest revisions of the migration files: those no other file builds on."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if "revision" in names:
                    revisions.add(ast.literal_eval(node.value))
                elif "down_revision" in names:
                    value = ast.literal_eval(node.value)
                    parents.update([value] if isinstance(value, str) else value or ())
    return frozenset(revisions - parents)


def pending(engine: Engine) -> bool:
    """True when the database is missing migrations (or was never migrated)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return True
        current = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
    return current != script_heads()
