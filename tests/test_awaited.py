"""PostgreSQL statements awaited on the event loop: pooled per loop, dead connections replaced."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from idp.db.awaited import AwaitedStatements, _positional
from tests.conftest import on_own_loop

PID = "SELECT pg_backend_pid()"


@pytest.fixture
def postgresql_url(db) -> str:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    return db.url


def _terminate(db, pid: int) -> None:
    with db.engine.connect() as connection:
        connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_concurrent_statements_each_get_a_connection_and_reuse_them(postgresql_url):
    statements = AwaitedStatements(postgresql_url, size=3, idle_ping_seconds=60)

    async def run() -> tuple[set[int], set[int]]:
        # pg_sleep keeps each connection busy, so the six overlap as far as the pool allows.
        first = await asyncio.gather(
            *(statements.fetchone("SELECT pg_backend_pid(), pg_sleep(0.05)", {}) for _ in range(6))
        )
        again = await asyncio.gather(*(statements.fetchone(PID, {}) for _ in range(3)))
        await statements.aclose()
        return {row[0] for row in first}, {row[0] for row in again}

    opened, reused = on_own_loop(run())
    assert len(opened) == 3  # never more than the pool's size
    assert reused <= opened


def test_a_connection_that_sat_idle_is_pinged_and_replaced_when_dead(db, postgresql_url):
    statements = AwaitedStatements(postgresql_url, size=2, idle_ping_seconds=0.0)

    async def run() -> tuple[int, int]:
        (dead,) = await statements.fetchone(PID, {})
        await asyncio.to_thread(_terminate, db, dead)
        (replacement,) = await statements.fetchone(PID, {})
        await statements.aclose()
        return dead, replacement

    dead, replacement = on_own_loop(run())
    assert replacement != dead


def test_a_failed_statement_closes_its_connection_and_the_next_gets_another(postgresql_url):
    statements = AwaitedStatements(postgresql_url, size=1, idle_ping_seconds=60)

    async def run() -> tuple[int, int]:
        (before,) = await statements.fetchone(PID, {})
        with pytest.raises(psycopg.errors.UndefinedTable):
            await statements.fetchone("SELECT * FROM no_such_table", {})
        (after,) = await statements.fetchone(PID, {})
        await statements.aclose()
        return before, after

    before, after = on_own_loop(run())
    assert after != before


def test_each_event_loop_opens_its_own_connections(postgresql_url):
    statements = AwaitedStatements(postgresql_url, size=1, idle_ping_seconds=60)
    assert on_own_loop(statements.fetchone("SELECT 1", {})) == (1,)
    # A second loop (another test server, a restarted worker) must not use the first's.
    assert on_own_loop(statements.fetchone("SELECT 2", {})) == (2,)


def test_named_parameters_are_sent_in_order_and_a_name_used_twice_twice():
    sql = "SELECT %(a)s, %(b)s::bytea WHERE %(a)s LIKE 'x%%'"
    assert _positional(sql) == ("SELECT %s, %s::bytea WHERE %s LIKE 'x%%'", ("a", "b", "a"))


def test_a_statement_naming_a_value_twice_gets_it_twice(postgresql_url):
    statements = AwaitedStatements(postgresql_url, size=1, idle_ping_seconds=60)

    async def run() -> tuple[Any, ...] | None:
        try:
            return await statements.fetchone(
                "SELECT %(n)s::int + %(m)s::int, %(n)s::int, 'a%%'", {"n": 2, "m": 5}
            )
        finally:
            await statements.aclose()

    assert on_own_loop(run()) == (7, 2, "a%")
