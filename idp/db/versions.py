"""Version counters of cached data sets, so every worker process notices changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.models import CacheVersion


def current(session: Session, name: str) -> int:
    """The data set's version (0 if it never changed)."""
    return session.scalar(select(CacheVersion.version).where(CacheVersion.name == name)) or 0


def bump(session: Session, name: str) -> None:
    """Mark the data set changed, in the caller's transaction.

    One insert-or-increment: an update that found no row followed by an insert let
    two first changes at once (two `idp clients add`, two nodes starting) both
    insert, and the later failed on the primary key.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(CacheVersion)
        .values(name=name, version=1)
        .on_conflict_do_update(index_elements=["name"], set_={"version": CacheVersion.version + 1})
    )
