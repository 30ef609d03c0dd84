"""PostgreSQL statements awaited on the event loop, for the hot paths that write.

The protocol endpoints run on the event loop: a hop to a worker thread costs
them more than their work (PERFORMANCE.md). A statement through the synchronous
driver holds the loop for its whole round trip, though, and a durable commit
waits for PostgreSQL's WAL flush (about 0.4 ms on the benchmark machine): the
worker then serves one such request at a time and its CPU sits idle. Awaited
with psycopg's asyncio connection, the loop serves other requests meanwhile,
and PostgreSQL flushes the commits of concurrent requests together.

Each event loop (a worker process; a test's server) has its own small pool of
autocommit connections, opened on first use. A connection that sat idle is
pinged before use, as the synchronous engine's are (idp/db/engine.py); one
whose statement failed or was cancelled is closed, not reused.

They have the engine's timeouts (connect, statement, lock, TCP keepalive), and one
more bound of their own: a statement (or a ping) not answered within the connect and
statement timeouts together (a server frozen, not closed: its own timeouts do not
fire) is given up, its connection's socket shut down, as
:class:`psycopg.OperationalError`. Not by cancelling the wait: psycopg then asks the
server to cancel the statement and waits for that too (up to 10 s more).

Each connection keeps one cursor; statements are written with positional
parameters (the named ``%(name)s`` ones converted once per statement), prepared
on the server from their first use and answered in binary. Against a new
cursor per statement with named parameters that is about a third less of the
worker's CPU per round trip (psycopg's Python side is most of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from idp.db.timeouts import DEFAULT_TIMEOUTS, Timeouts, postgresql_options

# How these connections show in pg_stat_activity, apart from the engine's.
APPLICATION_NAME = "idp awaited"


class _Pool:
    """One event loop's connections: at most ``size`` in use, idle ones kept for reuse."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.slots = asyncio.Semaphore(size)
        self.idle: list[tuple[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any], float]] = []


class AwaitedStatements:
    """Run one statement on a pooled asyncio connection (autocommit) and await its row."""

    def __init__(
        self,
        database_url: str,
        size: int,
        idle_ping_seconds: float,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._options = postgresql_options(timeouts)
        self._size = size
        self._idle_ping_seconds = idle_ping_seconds
        # How long a statement or ping may go unanswered before its connection is cut.
        self._deadline = (timeouts.connect + timeouts.statement) if timeouts.statement else None
        self._pool: _Pool | None = None

    async def fetchone(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of ``sql`` (committed on its own), or None.

        ``sql`` names its parameters (``%(name)s``); ``params`` gives their values.
        """
        positional, names = _positional(sql)
        values = tuple([params[name] for name in names])
        pool = self._current_pool()
        async with pool.slots:
            connection, cursor = await self._connection(pool)
            cut = self._cut_later(pool.loop, connection)
            try:
                await cursor.execute(positional, values, prepare=True, binary=True)
                row = await cursor.fetchone()
            except BaseException as exc:
                # Failed or cancelled mid-statement: what state it is in is unknown.
                await _close(connection)
                self._raise_if_cut(pool.loop, cut, exc)
                raise
            finally:
                if cut is not None:
                    cut.cancel()
            pool.idle.append((connection, cursor, time.monotonic()))
            return row

    def _cut_later(
        self, loop: asyncio.AbstractEventLoop, connection: psycopg.AsyncConnection[Any]
    ) -> asyncio.TimerHandle | None:
        if self._deadline is None:
            return None
        return loop.call_later(self._deadline, _shut_down, connection)

    def _raise_if_cut(
        self, loop: asyncio.AbstractEventLoop, cut: asyncio.TimerHandle | None, exc: BaseException
    ) -> None:
        if cut is not None and not cut.cancelled() and loop.time() >= cut.when():
            raise psycopg.OperationalError(
                f"the database did not answer within {self._deadline} s"
            ) from exc

    async def aclose(self) -> None:
        """Close this loop's idle connections (at shutdown)."""
        pool, self._pool = self._pool, None
        if pool is not None and pool.loop is asyncio.get_running_loop():
            for connection, _, _ in pool.idle:
                await _close(connection)

    def _current_pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            # Connections and semaphores belong to the loop that made them.
            self._pool = _Pool(loop, self._size)
        return self._pool

    async def _connection(
        self, pool: _Pool
    ) -> tuple[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]]:
        while pool.idle:
            connection, cursor, idle_since = pool.idle.pop()
            if connection.closed:
                continue
            if time.monotonic() - idle_since < self._idle_ping_seconds:
                return connection, cursor
            cut = self._cut_later(pool.loop, connection)
            try:
                await connection.execute("SELECT 1")
            except psycopg.Error as exc:
                await _close(connection)
                self._raise_if_cut(pool.loop, cut, exc)  # the others would not answer either
                continue
            finally:
                if cut is not None:
                    cut.cancel()
            return connection, cursor
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=APPLICATION_NAME, **self._options
        )
        return connection, connection.cursor()


_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=64)
def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``%(name)s`` placeholders as ``%s``, and the names in their order
    (a name used twice is sent twice). ``%%`` stays as it is."""
    return _NAMED.sub("%s", sql), tuple(_NAMED.findall(sql))


def _shut_down(connection: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down: its wait for an answer ends with an error."""
    # On a duplicate of the descriptor: closing it leaves libpq's own open.
    with (
        contextlib.suppress(Exception),
        socket.socket(fileno=os.dup(connection.pgconn.socket)) as duplicate,
    ):
        duplicate.shutdown(socket.SHUT_RDWR)


async def _close(connection: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await connection.close()
