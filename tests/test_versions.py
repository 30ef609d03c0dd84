"""Cache version counters: two first changes of one data set at once both count.

No HTTP request bumps a version (the CLI and first start do: `idp clients add`,
`idp keys rotate`, `serve --migrate` on two nodes), so this drives the counter
through two units of work on the real database, the second started while the
first still holds its new row.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text

from idp.db import versions
from idp.db.engine import Database
from idp.db.models import CacheVersion


def _wait_until_blocked(db: Database, thread: threading.Thread) -> None:
    """Return once the other unit of work waits for ours (PostgreSQL: a lock wait)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.is_alive():
        if db.dialect != "postgresql":
            thread.join(0.2)  # SQLite: it queues for the write lock; give it time to get there
            return
        with db.engine.connect() as connection:
            waiting = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        time.sleep(0.01)


def test_two_first_bumps_at_once_both_count(db):
    other = Database(db.url)
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with other.unit_of_work() as session:
                versions.bump(session, "clients")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=second)
    with db.unit_of_work() as session:
        versions.bump(session, "clients")
        thread.start()
        _wait_until_blocked(db, thread)
    thread.join(10)
    other.dispose()

    assert failures == []
    with db.unit_of_work() as session:
        assert (
            session.scalar(select(CacheVersion.version).where(CacheVersion.name == "clients")) == 2
        )
