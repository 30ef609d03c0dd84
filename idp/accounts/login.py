"""Password login: throttled, the same answer for unknown and known emails.

An unknown email is checked against a dummy hash, so it costs the same time
as a wrong password for a known one and gives the same message. Every
success, failure and lockout is an audit event. A hash made with older
argon2 parameters is replaced at the next successful login.

A login is three steps: :func:`begin` reads (one statement, outside any
transaction) and reserves the attempt on its throttling counters (compare-and-set,
idp.accounts.throttle), :func:`check_password` hashes (awaited, in the hasher's
threads, no transaction open meanwhile) and :func:`conclude` writes (one unit of
work). Every login runs this, around one argon2id verify, so it reads and writes
with Core statements (the columns it needs, no ORM objects): the unit of work's
loading and flushing cost more than the statements, and the code after the verify
runs with caches the hash has just swept through.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import InvalidEmail, LoginBlocked, LoginFailed
from idp.accounts.passwords import passwords_for
from idp.audit.events import record
from idp.db.engine import Database, Prebuilt, read_row_awaited
from idp.db.models import Account, LoginThrottle
from idp.settings import Settings

_ACCOUNTS = Account.__table__
_EMAIL_COUNTER = LoginThrottle.__table__.alias("email_counter")
_IP_COUNTER = LoginThrottle.__table__.alias("ip_counter")
_ONE = select(literal(1).label("one")).subquery("one")
# One statement: the account (if any) and both throttling counters (if any), a round
# trip less than two queries on PostgreSQL.
_FIND = Prebuilt(
    select(
        _ACCOUNTS.c.id,
        _ACCOUNTS.c.password_hash,
        _ACCOUNTS.c.disabled_at,
        _EMAIL_COUNTER.c.key.label("email_key"),
        _EMAIL_COUNTER.c.blocked_until.label("email_blocked_until"),
        _IP_COUNTER.c.key.label("ip_key"),
        _IP_COUNTER.c.blocked_until.label("ip_blocked_until"),
    ).select_from(
        _ONE.outerjoin(_ACCOUNTS, _ACCOUNTS.c.email == bindparam("email"))
        .outerjoin(_EMAIL_COUNTER, _EMAIL_COUNTER.c.key == bindparam("email_key"))
        .outerjoin(_IP_COUNTER, _IP_COUNTER.c.key == bindparam("ip_key"))
    )
)
# A stale hash replaced after a success, as parameters.
_REHASHED = Prebuilt(update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account")))


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt, reserved on its throttling counters before its password is checked.

    ``password_hash`` is None for an unknown email or a disabled account: the check
    then runs against the dummy hash and fails.
    """

    reservation: throttle.Reservation
    account_id: int | None
    password_hash: str | None


async def begin(database: Database, settings: Settings, *, email: str, ip: str | None) -> Attempt:
    """Find the account and reserve the attempt on its throttling counters; raise
    LoginBlocked while it must wait (recorded in a unit of work of its own).

    One read outside any transaction (awaited on PostgreSQL, at once on SQLite): a login
    that must wait is refused on what is committed now, writing nothing but its audit
    event. Otherwise the attempt is counted before its hash runs (throttle.reserve), so
    concurrent attempts cannot all pass one check.
    """
    try:
        login_id = normalise_email(email)
    except InvalidEmail:
        login_id = email.strip().lower()[:320]
    email_key = throttle.email_key(login_id)
    ip_key = throttle.ip_key(ip)
    found = await read_row_awaited(
        database, _FIND, {"email": login_id, "email_key": email_key, "ip_key": ip_key}
    )
    assert found is not None  # the outer joins always give one row
    account_id, password_hash, disabled_at, email_counter, email_until, ip_counter, ip_until = found
    wait = throttle.summarise(
        [(email_counter, email_until), (ip_counter, ip_until)], clock.now(database)
    )
    if not wait:
        try:
            reservation = await throttle.reserve(
                database, settings, email_key=email_key, ip_key=ip_key
            )
        except throttle.Blocked as exc:
            wait = exc.seconds
    if wait:
        await database.run_sync(partial(_record_blocked, database, account_id, ip, wait))
        raise LoginBlocked("login.blocked", seconds=wait)
    usable = account_id is not None and disabled_at is None
    return Attempt(reservation, account_id, password_hash if usable else None)


def _record_blocked(database: Database, account_id: int | None, ip: str | None, wait: int) -> None:
    with database.unit_of_work() as session:
        record(session, "login.blocked", account_id=account_id, ip=ip, data={"wait": wait})


def _locked_meanwhile(settings: Settings) -> LoginBlocked:
    return LoginBlocked("login.locked", seconds=settings.login_lockout_minutes * 60)


def conclude(
    session: Session,
    settings: Settings,
    attempt: Attempt,
    *,
    matched: bool,
    new_hash: str | None = None,
    ip: str | None,
    event: str = "login.success",
) -> int:
    """Record the outcome of the password check; the account's id, or raise LoginFailed or
    LoginBlocked (this attempt locked the email, or attempts that began after it did).
    ``event`` names the audit event of a success (a re-authentication is not a login).

    ``matched``: the password matched ``attempt.password_hash``; ``new_hash``: the same
    password hashed with the current parameters, where its stored hash is stale.
    Failures are recorded in ``session``: the caller commits even when this raises.
    """
    account_id = attempt.account_id
    reservation = attempt.reservation
    if not matched:
        # The attempt was counted when it was reserved: only the audit is left to write.
        record(
            session,
            "login.failure",
            account_id=account_id,
            ip=ip,
            data={
                "reason": "password" if account_id is not None else "unknown_email",
                "failures": reservation.email_position,
            },
        )
        if reservation.locked:
            record(
                session,
                "login.lockout",
                account_id=account_id,
                ip=ip,
                data={
                    "failures": reservation.email_position,
                    "minutes": settings.login_lockout_minutes,
                },
            )
            raise _locked_meanwhile(settings)
        raise LoginFailed("login.failed")

    assert account_id is not None  # a match needs the account's own hash
    if not throttle.release_on_success(
        throttle.in_session(session), reservation, settings, clock.now(session)
    ):
        record(session, "login.blocked", account_id=account_id, ip=ip, data={"locked": True})
        raise _locked_meanwhile(settings)
    if new_hash is not None:
        _REHASHED.execute(session, {"account": account_id, "password_hash": new_hash})
    record(session, event, account_id=account_id, ip=ip, data={"amr": ["pwd"]})
    return account_id


async def check_password(
    settings: Settings, attempt: Attempt, password: str
) -> tuple[bool, str | None]:
    """The password check between :func:`begin` and :func:`conclude`, awaited: (whether it
    matched, a new hash where the stored one has stale parameters). The hashing runs in
    the hasher's own threads; the event loop serves other requests meanwhile."""
    hasher = passwords_for(settings)
    matched = await hasher.verify_awaited(attempt.password_hash, password)
    if matched and attempt.password_hash is not None and hasher.needs_rehash(attempt.password_hash):
        return True, await hasher.hash_awaited(password)
    return matched, None
