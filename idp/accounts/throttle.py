"""Brute-force protection for password logins, kept in the database.

Two counters per attempt: one per login identifier (the normalised email's
digest, for known and unknown addresses alike) and one per client IP. An
attempt is **reserved** before its password is hashed: one compare-and-set
statement per counter adds it (``failures = failures + 1``) unless the counter
is blocked, and returns its position. So however many attempts arrive at once,
at most as many hashes run as the limits allow, on SQLite and PostgreSQL alike.

After ``IDP_LOGIN_FREE_ATTEMPTS`` attempts each further one must wait, doubling
from one second up to the lockout time; the attempt at position
``IDP_LOGIN_LOCKOUT_ATTEMPTS`` locks the email for ``IDP_LOGIN_LOCKOUT_MINUTES``.
The IP counter only backs off, and never for longer than
``IDP_LOGIN_IP_MAX_WAIT_SECONDS`` (many citizens can share one address). A
successful login releases its reservations: the email's counter is cleared
(unless attempts that began after it locked the email meanwhile: then the
login is refused), the IP's goes down by one. Counters whose last attempt is a
day old start over.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.db.engine import Database, Prebuilt
from idp.db.models import LoginThrottle
from idp.settings import Settings

FORGET_AFTER = timedelta(days=1)
# 2 ** 30 seconds is decades: every wait is capped far below that anyway.
_MAX_EXPONENT = 30


def email_key(email: str) -> str:
    """The counter key of a login identifier (no address in clear)."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


def ip_key(ip: str | None) -> str | None:
    """The counter key of a client address, if known."""
    return f"ip:{ip}"[:96] if ip else None


def summarise(rows: Iterable[tuple[str | None, datetime | None]], now: datetime) -> int:
    """How long the citizen must wait before the next try (0: may try now), from
    (key, blocked_until) pairs (a key of None: no counter). The login reads them joined
    to its account lookup (idp.accounts.login): one statement, not two."""
    waits = [
        (blocked_until - now).total_seconds()
        for key, blocked_until in rows
        if key is not None and blocked_until is not None and blocked_until > now
    ]
    return math.ceil(max(waits)) if waits else 0


def backoff(position: int, free: int, longest: timedelta) -> timedelta | None:
    """The wait after the attempt at ``position``: none before ``free``, then doubling from
    one second, never longer than ``longest`` (the exponent is capped: no overflow)."""
    if position < free:
        return None
    exponent = min(position - free, _MAX_EXPONENT)
    return min(timedelta(seconds=2**exponent), longest)


_THROTTLES = LoginThrottle.__table__
_C = _THROTTLES.c


def _reserving(dialect: Any) -> Any:
    """Count one attempt for ``key`` unless it is blocked now; its position (no row: blocked)."""
    inserted = dialect.insert(_THROTTLES).values(
        key=bindparam("counter"),
        failures=1,
        last_failure_at=bindparam("now", type_=_C.last_failure_at.type),
        blocked_until=None,
    )
    return inserted.on_conflict_do_update(
        index_elements=[_C.key],
        set_={
            "failures": case(
                (_C.last_failure_at < bindparam("forget_before", type_=_C.last_failure_at.type), 1),
                else_=_C.failures + 1,
            ),
            "last_failure_at": inserted.excluded.last_failure_at,
        },
        where=or_(
            _C.blocked_until.is_(None), _C.blocked_until <= inserted.excluded.last_failure_at
        ),
    ).returning(_C.failures)


_RESERVE = {"postgresql": Prebuilt(_reserving(postgresql)), "sqlite": Prebuilt(_reserving(sqlite))}
# A wait set by an attempt: only ever made longer, whatever order concurrent attempts
# write in.
_BLOCK = Prebuilt(
    update(_THROTTLES)
    .where(
        _C.key == bindparam("counter"),
        or_(_C.blocked_until.is_(None), _C.blocked_until < bindparam("wait_until")),
    )
    .values(blocked_until=bindparam("wait_until", type_=_C.blocked_until.type))
)
# A success clears the email's counter, unless an attempt that began later has locked it.
_RELEASE_EMAIL = Prebuilt(
    delete(_THROTTLES)
    .where(
        _C.key == bindparam("counter"),
        or_(_C.failures < bindparam("lockout"), _C.failures == bindparam("position")),
    )
    .returning(_C.key)
)
_STILL_BLOCKED = Prebuilt(
    select(_C.key).where(
        _C.key == bindparam("counter"),
        _C.blocked_until > bindparam("now", type_=_C.blocked_until.type),
    )
)
_RELEASE_IP = Prebuilt(
    update(_THROTTLES)
    .where(and_(_C.key == bindparam("counter"), _C.failures > 0))
    .values(failures=_C.failures - 1)
    .returning(_C.key)
)
_BLOCKED_UNTIL = Prebuilt(select(_C.blocked_until).where(_C.key == bindparam("counter")))


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt counted before its password is hashed, on the email's counter and the
    client IP's (``ip_key`` None without an address).

    ``email_position`` counts attempts on the login identifier since its last success;
    ``locked``: this attempt reached the lockout (it is still checked: a right password
    releases the lock, a wrong one keeps it).
    """

    email_key: str
    email_position: int
    ip_key: str | None
    locked: bool


class Blocked(Exception):
    """A counter is blocked: the attempt must wait ``seconds`` before it is tried."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"blocked for {seconds} s")
        self.seconds = max(seconds, 1)


def _plan(settings: Settings, email: str, ip: str | None) -> list[tuple]:
    lockout = timedelta(minutes=settings.login_lockout_minutes)
    ip_longest = min(lockout, timedelta(seconds=settings.login_ip_max_wait_seconds))
    plans = [(email, settings.login_free_attempts, lockout, True)]
    if ip is not None:
        plans.append((ip, settings.login_ip_free_attempts, ip_longest, False))
    return plans


def _wait(
    position: int, free: int, longest: timedelta, locks: bool, settings: Settings
) -> timedelta | None:
    if locks and position >= settings.login_lockout_attempts:
        return timedelta(minutes=settings.login_lockout_minutes)
    return backoff(position, free, longest)


async def reserve(
    database: Database, settings: Settings, *, email_key: str, ip_key: str | None
) -> Reservation:
    """Count one attempt on the email's and the IP's counters before its password is
    checked; raise :class:`Blocked` if either must wait.

    One transaction (at once on SQLite, in a worker thread on PostgreSQL): each counter's
    compare-and-set statement takes its row until the wait it may set is written, so
    concurrent attempts each get their own position and none slips past a wait.
    """
    plans = _plan(settings, email_key, ip_key)
    positions = await database.run_sync(partial(_reserve, database, plans, settings))
    email_position = positions[0]
    return Reservation(
        email_key, email_position, ip_key, email_position >= settings.login_lockout_attempts
    )


def _reserve(database: Database, plans: list[tuple], settings: Settings) -> list[int]:
    now = clock.now(database)
    reserving = _RESERVE[database.dialect]
    positions = []
    with database.dbapi_connection() as connection:
        for key, free, longest, locks in plans:
            parameters = {"counter": key, "now": now, "forget_before": now - FORGET_AFTER}
            rows = reserving.execute_on(database, connection, parameters)
            if not rows:
                found = _BLOCKED_UNTIL.execute_on(database, connection, {"counter": key})
                blocked = Blocked(_seconds_until(found[0][0] if found else None, now))
                # What was counted before the blocked counter stays counted: the block is
                # an answer, not an error to roll back.
                connection.commit()
                raise blocked
            position = rows[0][0]
            wait = _wait(position, free, longest, locks, settings)
            if wait is not None:
                _BLOCK.execute_on(database, connection, {"counter": key, "wait_until": now + wait})
            positions.append(position)
    return positions


def _seconds_until(until: datetime | None, now: datetime) -> int:
    return math.ceil((until - now).total_seconds()) if until is not None and until > now else 1


def _releasing(reservation: Reservation, settings: Settings) -> dict[str, Any]:
    return {
        "counter": reservation.email_key,
        "lockout": settings.login_lockout_attempts,
        "position": reservation.email_position,
    }


def release_on_success(
    run: Any, reservation: Reservation, settings: Settings, now: datetime
) -> bool:
    """Release a successful attempt's reservations with ``run(prebuilt, params)`` (its rows)
    in the caller's transaction, ``now``; False if the email was locked meanwhile by attempts
    that began after this one (the login must then be refused)."""
    if not run(_RELEASE_EMAIL, _releasing(reservation, settings)) and run(
        _STILL_BLOCKED, {"counter": reservation.email_key, "now": now}
    ):
        return False
    if reservation.ip_key is not None:
        run(_RELEASE_IP, {"counter": reservation.ip_key})
    return True


def in_session(session: Session) -> Any:
    """A ``run`` for :func:`release_on_success` in a unit of work."""
    return lambda statement, params: statement.execute(session, params)


def clear(session: Session, key: str) -> None:
    """Forget the attempts of ``key`` (after a password reset)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
