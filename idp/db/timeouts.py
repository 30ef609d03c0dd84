"""How long the database may keep a request waiting (the timeouts of every connection),
and telling the errors of a database that cannot serve now from those of a bug."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

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


# SQLite's errors of a database that cannot take the statement now (its other
# OperationalErrors, "no such table" say, are bugs).
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "database or disk is full",
    "disk I/O error",
    "unable to open database file",
)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, says the database cannot serve now:
    a lost or refused connection, a statement or lock timeout, a locked or full SQLite."""
    for _ in range(5):  # an error raised while handling one, and so on, a few deep
        if _unavailable(exc):
            return True
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            return False
        exc = cause
    return False


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    # PostgreSQL's OperationalErrors: connection failures, query_canceled (the statement
    # timeout), lock_not_available, serialization failures and deadlocks, admin shutdown.
    if isinstance(exc, psycopg.OperationalError):
        return True
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(_SQLITE_UNAVAILABLE)
