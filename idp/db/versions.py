"""Version counters of cached data sets, so every worker process notices changes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.models import CacheVersion

if TYPE_CHECKING:
    from idp.db.engine import Database


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


class VersionedCache(ABC):
    """A data set a process keeps in memory, reloaded when its version counter moves.

    Subclasses name the set (``cache_name``), keep ``db`` and implement :meth:`load`,
    which reads the set and records the version it read as ``self.version``.
    """

    cache_name: str
    db: Database
    version: int = -1

    @abstractmethod
    def load(self) -> None:
        """Read the whole set and note the version read as ``self.version``."""

    def refresh_if_changed(self) -> bool:
        """Reload when another process (or command) changed the set; True if it did."""
        with self.db.unit_of_work() as session:
            version = current(session, self.cache_name)
        if version == self.version:
            return False
        self.load()
        return True
