"""The readiness probe's write: a heartbeat counter, committed as any write is.

A ``SELECT 1`` answered while every write failed (a full disk, a lock held) and hung
while the database was frozen. The heartbeat goes the way of a login's writes (on
SQLite the writer queue and the write lock; on PostgreSQL a commit) and is kept within
the probe's bound on the server's side too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from idp.db import versions

if TYPE_CHECKING:
    from idp.db.engine import Database

# Its row among the version counters; no cache reads it.
HEARTBEAT = "readiness"


def beat(database: Database, bound_seconds: int) -> None:
    """Commit one write; raise what the database raised (a timeout after ``bound_seconds``
    on PostgreSQL, the lock timeout on SQLite)."""
    with database.unit_of_work() as session:
        if database.dialect == "postgresql":
            milliseconds = bound_seconds * 1000
            session.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
            session.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
        versions.bump(session, HEARTBEAT)
