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

Each realm (idp.accounts.realms) has counters of its own: its keys start with the
realm's prefix. The statements are idp.db.throttles'.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts.realms import Realm
from idp.db import throttles
from idp.db.engine import Database
from idp.settings import Settings

FORGET_AFTER = timedelta(days=1)
# 2 ** 30 seconds is decades: every wait is capped far below that anyway.
_MAX_EXPONENT = 30


def email_key(realm: Realm, email: str) -> str:
    """The counter key of a login identifier in ``realm`` (no address in clear)."""
    return realm.throttle_prefix + "email:" + hashlib.sha256(email.encode()).hexdigest()


def ip_key(realm: Realm, ip: str | None) -> str | None:
    """The counter key of a client address in ``realm``, if known."""
    return f"{realm.throttle_prefix}ip:{ip}"[:96] if ip else None


def summarise(rows: Iterable[tuple[str | None, datetime | None]], now: datetime) -> int:
    """How long the citizen must wait before the next try (0: may try now), from
    (key, blocked_until) pairs (a key of None: no counter), ``now``. The login reads them
    joined to its account lookup (idp.db.throttles.login_lookup): one statement, not two."""
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


def _email_wait(settings: Settings, position: int) -> timedelta | None:
    if position >= settings.login_lockout_attempts:
        return timedelta(minutes=settings.login_lockout_minutes)
    return backoff(
        position, settings.login_free_attempts, timedelta(minutes=settings.login_lockout_minutes)
    )


def _ip_wait(settings: Settings, position: int) -> timedelta | None:
    longest = min(
        timedelta(minutes=settings.login_lockout_minutes),
        timedelta(seconds=settings.login_ip_max_wait_seconds),
    )
    return backoff(position, settings.login_ip_free_attempts, longest)


async def reserve(
    database: Database, settings: Settings, *, email_key: str, ip_key: str | None
) -> Reservation:
    """Count one attempt on the email's and the IP's counters before its password is
    checked; raise :class:`Blocked` if either must wait.

    One transaction (at once on SQLite, in a worker thread on PostgreSQL): each counter's
    compare-and-set statement takes its row until the wait it may set is written, so
    concurrent attempts each get their own position and none slips past a wait.
    """
    counters = [(email_key, partial(_email_wait, settings))]
    if ip_key is not None:
        counters.append((ip_key, partial(_ip_wait, settings)))
    now = clock.now(database)
    try:
        positions = await database.run_sync(
            partial(
                throttles.count_attempts,
                database,
                counters,
                now=now,
                forget_before=now - FORGET_AFTER,
            )
        )
    except throttles.CounterBlocked as exc:
        raise Blocked(_seconds_until(exc.until, now)) from None
    email_position = positions[0]
    return Reservation(
        email_key, email_position, ip_key, email_position >= settings.login_lockout_attempts
    )


def _seconds_until(until: datetime | None, now: datetime) -> int:
    return math.ceil((until - now).total_seconds()) if until is not None and until > now else 1


def release_on_success(session: Session, reservation: Reservation, settings: Settings) -> bool:
    """Release a successful attempt's reservations in the unit of work; False if the email
    was locked meanwhile by attempts that began after this one (the login must then be
    refused)."""
    if not throttles.clear_unless_locked(
        session,
        reservation.email_key,
        lockout=settings.login_lockout_attempts,
        position=reservation.email_position,
    ) and throttles.blocked_now(session, reservation.email_key, clock.now(session)):
        return False
    if reservation.ip_key is not None:
        throttles.take_back_one(session, reservation.ip_key)
    return True


def clear(session: Session, key: str) -> None:
    """Forget the attempts of ``key`` (after a password reset)."""
    throttles.forget(session, key)
