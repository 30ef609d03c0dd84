"""How long the database may keep a request waiting: the timeouts of every connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from idp.settings import Settings


class Timeouts(NamedTuple):
    """How long the database may keep a request waiting, in seconds.

    ``connect``: opening a PostgreSQL connection, or waiting for a pooled one;
    ``statement``: one PostgreSQL statement (0: no limit); ``lock``: waiting for a lock
    (PostgreSQL's ``lock_timeout``; SQLite: the write lock, in the writer queue and in
    SQLite's busy handler). Past them the statement fails and the request answers 503.
    """

    connect: int = 5
    statement: int = 10
    lock: int = 5

    @classmethod
    def of(cls, settings: Settings) -> Timeouts:
        return cls(
            settings.db_connect_timeout_seconds,
            settings.db_statement_timeout_seconds,
            settings.db_lock_timeout_seconds,
        )


# Migrations may rewrite large tables: no statement timeout, the lock timeout kept (a
# migration waiting for a lock would queue every request behind it).
MIGRATION_TIMEOUTS = Timeouts(statement=0)

# What a connection gets unless its owner says otherwise (the settings' defaults).
DEFAULT_TIMEOUTS = Timeouts()

# TCP keepalive on PostgreSQL connections: a server that vanished without closing them
# (a crashed machine, a dropped route) is noticed after about 25 s, in a statement too.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def postgresql_options(timeouts: Timeouts) -> dict[str, Any]:
    """libpq connection parameters that bound a connection's waits (idp/db/awaited.py too)."""
    return {
        "connect_timeout": timeouts.connect,
        "options": f"-c statement_timeout={timeouts.statement * 1000}"
        f" -c lock_timeout={timeouts.lock * 1000}",
        **KEEPALIVE,
    }
