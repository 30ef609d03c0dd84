"""Brute-force protection for password logins, kept in the database.

Two counters per attempt: one per login identifier (the normalised email's
digest, for known and unknown addresses alike) and one per client IP. After
``IDP_LOGIN_FREE_ATTEMPTS`` wrong passwords each further try must wait,
doubling from one second up to the lockout time; ``IDP_LOGIN_LOCKOUT_ATTEMPTS``
wrong passwords in a row lock the email for ``IDP_LOGIN_LOCKOUT_MINUTES``.
The IP counter only backs off (many citizens can share one address). A
successful login or a password reset clears the email's counter; counters
whose last failure is a day old start over.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.db.engine import Database, Prebuilt
from idp.db.models import LoginThrottle
from idp.settings import Settings

FORGET_AFTER = timedelta(days=1)


def email_key(email: str) -> str:
    """The counter key of a login identifier (no address in clear)."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


def ip_key(ip: str | None) -> str | None:
    """The counter key of a client address, if known."""
    return f"ip:{ip}"[:96] if ip else None


def summarise(rows: Iterable[tuple[str | None, datetime | None]]) -> tuple[int, frozenset[str]]:
    """How long the citizen must wait before the next try (0: may try now), and which
    counters exist (a login that finds none has none to clear), from (key, blocked_until)
    pairs (a key of None: no counter). The login reads them joined to its account lookup
    (idp.accounts.login): one statement, not two."""
    rows = list(rows)
    now = clock.now()
    waits = [
        (blocked_until - now).total_seconds()
        for key, blocked_until in rows
        if key is not None and blocked_until is not None and blocked_until > now
    ]
    found = frozenset(key for key, _ in rows if key is not None)
    return (math.ceil(max(waits)) if waits else 0), found


@dataclass(frozen=True)
class Failure:
    failures: int
    locked: bool  # this failure locked the login identifier


def _row(session: Session, key: str) -> LoginThrottle:
    now = clock.now()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # Insert-or-nothing, then lock the row: concurrent first failures cannot collide.
    session.execute(
        dialect.insert(LoginThrottle)
        .values(key=key, failures=0, last_failure_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def record_failure(
    session: Session, key: str, settings: Settings, *, free: int, lockout: bool
) -> Failure:
    """Count one wrong password for ``key`` and set its wait; lock it if ``lockout``."""
    now = clock.now()
    row = _row(session, key)
    if now - row.last_failure_at > FORGET_AFTER:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    longest = timedelta(minutes=settings.login_lockout_minutes)
    locked = lockout and row.failures >= settings.login_lockout_attempts
    if locked:
        row.blocked_until = now + longest
    elif row.failures >= free:
        row.blocked_until = now + min(timedelta(seconds=2 ** (row.failures - free)), longest)
    return Failure(row.failures, locked)


_THROTTLES = LoginThrottle.__table__
# The counter of one key gone, as a DELETE ... CTE (PostgreSQL) or on its own.
CLEARING = delete(_THROTTLES).where(_THROTTLES.c.key == bindparam("cleared_key"))
_CLEAR = Prebuilt(CLEARING)


def clear(session: Session, key: str) -> None:
    """Forget the failures of ``key`` (after a success or a password reset)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


def clear_on(database: Database, connection: Any, key: str) -> None:
    """:func:`clear` on a DB-API connection of ``database.dbapi_connection()``."""
    _CLEAR.execute_on(database, connection, {"cleared_key": key})
