"""Version counters of cached data sets, so every worker process notices changes."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.db.models import CacheVersion


def current(session: Session, name: str) -> int:
    """The data set's version (0 if it never changed)."""
    return session.scalar(select(CacheVersion.version).where(CacheVersion.name == name)) or 0


def bump(session: Session, name: str) -> None:
    """Mark the data set changed, in the caller's transaction."""
    result = session.execute(
        update(CacheVersion)
        .where(CacheVersion.name == name)
        .values(version=CacheVersion.version + 1)
    )
    if result.rowcount == 0:
        session.add(CacheVersion(name=name, version=1))
        session.flush()
