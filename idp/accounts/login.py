"""Password login: throttled, the same answer for unknown and known emails.

An unknown email is checked against a dummy hash, so it costs the same time
as a wrong password for a known one and gives the same message. Every
success, failure and lockout is an audit event. A hash made with older
argon2 parameters is replaced at the next successful login.

A login is three steps: :func:`begin` reads (one statement, outside any
transaction), :func:`check_password` hashes (awaited, in the hasher's threads, no
transaction open meanwhile) and :func:`conclude` writes (one unit of work). Every
login runs this, around one argon2id verify, so it reads and writes with Core
statements (the columns it needs, no ORM objects): the unit of work's loading and
flushing cost more than the statements, and the code after the verify runs with
caches the hash has just swept through. A success is written by :func:`succeed`
instead, without a unit of work: on PostgreSQL one statement awaited on the event
loop, on SQLite one transaction on a pooled connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.orm import Session

from idp.accounts import throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import InvalidEmail, LoginBlocked, LoginFailed
from idp.accounts.passwords import passwords_for
from idp.accounts.sessions import new_session, opening, store_on
from idp.audit import events as audit
from idp.audit.events import record
from idp.db.engine import Database, Prebuilt, execute_awaited, read_row_awaited
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
# PostgreSQL: what :func:`succeed` writes, in one statement: the email's failures counted
# before the attempt cleared (a NULL key clears none), the new session with the account's
# login time, and the audit event.
_SUCCEEDED_POSTGRESQL = Prebuilt(
    audit.appending(throttle.CLEARING.cte("cleared"), *opening("session_"))
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a login attempt found before its password is checked.

    ``password_hash`` is None for an unknown email or a disabled account: the check
    then runs against the dummy hash and fails. ``counted`` are the throttling
    counters that existed when the attempt began.
    """

    email_key: str
    ip_key: str | None
    account_id: int | None
    password_hash: str | None
    counted: frozenset[str]


async def begin(database: Database, *, email: str, ip: str | None) -> Attempt:
    """Find the account and its throttling counters; raise LoginBlocked while it must wait
    (recorded in a unit of work of its own).

    One read outside any transaction, awaited on PostgreSQL and at once on SQLite
    (read_row_awaited): a login is refused or checked on what is committed now, and the
    password check comes next, with no transaction open (:func:`conclude`).
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
    wait, counted = throttle.summarise([(email_counter, email_until), (ip_counter, ip_until)])
    if wait:
        await database.run_sync(partial(_record_blocked, database, account_id, ip, wait))
        raise LoginBlocked("login.blocked", seconds=wait)
    usable = account_id is not None and disabled_at is None
    return Attempt(email_key, ip_key, account_id, password_hash if usable else None, counted)


def _record_blocked(database: Database, account_id: int | None, ip: str | None, wait: int) -> None:
    with database.unit_of_work() as session:
        record(session, "login.blocked", account_id=account_id, ip=ip, data={"wait": wait})


def conclude(
    session: Session,
    settings: Settings,
    attempt: Attempt,
    *,
    matched: bool,
    new_hash: str | None = None,
    ip: str | None,
) -> int:
    """Record the outcome of the password check; the account's id, or raise LoginFailed or
    LoginBlocked (a lockout).

    ``matched``: the password matched ``attempt.password_hash``; ``new_hash``: the same
    password hashed with the current parameters, where its stored hash is stale.
    Failures are recorded in ``session``: the caller commits even when this raises.
    """
    account_id = attempt.account_id
    if not matched:
        failure = throttle.record_failure(
            session, attempt.email_key, settings, free=settings.login_free_attempts, lockout=True
        )
        if attempt.ip_key:
            throttle.record_failure(
                session,
                attempt.ip_key,
                settings,
                free=settings.login_ip_free_attempts,
                lockout=False,
            )
        record(
            session,
            "login.failure",
            account_id=account_id,
            ip=ip,
            data={
                "reason": "password" if account_id is not None else "unknown_email",
                "failures": failure.failures,
            },
        )
        if failure.locked:
            record(
                session,
                "login.lockout",
                account_id=account_id,
                ip=ip,
                data={"failures": failure.failures, "minutes": settings.login_lockout_minutes},
            )
            raise LoginBlocked("login.locked", seconds=settings.login_lockout_minutes * 60)
        raise LoginFailed("login.failed")

    assert account_id is not None  # a match needs the account's own hash
    if new_hash is not None:
        _REHASHED.execute(session, {"account": account_id, "password_hash": new_hash})
    if attempt.email_key in attempt.counted:
        # Only a counter that existed when the attempt began is cleared: one a concurrent
        # wrong guess created meanwhile stays (and a login with none writes nothing here).
        throttle.clear(session, attempt.email_key)
    _record_success(session, account_id, ip)
    return account_id


async def succeed(
    database: Database,
    settings: Settings,
    attempt: Attempt,
    *,
    matched: bool,
    new_hash: str | None,
    ip: str | None,
    user_agent: str | None,
) -> str | None:
    """What :func:`conclude` and a new session write after a match, without a unit of work;
    the new session's cookie token.

    PostgreSQL: one statement awaited on the event loop (a unit of work there is a hop
    to a worker thread and five round trips). SQLite: the same rows in one transaction on
    a pooled connection, at once. None, with nothing written, where it does not apply: no
    match, or a stale hash to replace. The caller then concludes in a unit of work, as it
    does where the browser has a session to end first.
    """
    if not matched or new_hash is not None:
        return None
    assert attempt.account_id is not None  # a match needs the account's own hash
    token, session = new_session(
        attempt.account_id, ["pwd"], settings, ip=ip, user_agent=user_agent
    )
    cleared = attempt.email_key if attempt.email_key in attempt.counted else None
    event = audit.append_parameters(
        "login.success", account_id=attempt.account_id, ip=ip, data={"amr": ["pwd"]}
    )
    if database.awaited is not None:
        params = {
            "cleared_key": cleared,
            **{f"session_{name}": value for name, value in session.items()},
            **event,
        }
        if await execute_awaited(database, _SUCCEEDED_POSTGRESQL, params) is None:
            # No head row, so no event: the chain starts from a unit of work (idp.audit).
            await database.run_sync(
                partial(_record_success_alone, database, attempt.account_id, ip)
            )
            return token
    else:
        await database.run_sync(partial(_write_success, database, cleared, session, event))
    audit.committed_outside_units(database, ["login.success"])
    return token


def _write_success(
    database: Database,
    cleared: str | None,
    session: dict[str, object],
    event: dict[str, object],
) -> None:
    with database.dbapi_connection() as connection:
        if cleared is not None:
            throttle.clear_on(database, connection, cleared)
        store_on(database, connection, session)
        audit.append_on(database, connection, event)


def _record_success(session: Session, account_id: int, ip: str | None) -> None:
    record(session, "login.success", account_id=account_id, ip=ip, data={"amr": ["pwd"]})


def _record_success_alone(database: Database, account_id: int, ip: str | None) -> None:
    with database.unit_of_work() as session:
        _record_success(session, account_id, ip)


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
