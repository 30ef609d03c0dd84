"""Password login: throttled, the same answer for unknown and known emails.

An unknown email is checked against a dummy hash, so it costs the same time
as a wrong password for a known one and gives the same message. Every
success, failure and lockout is an audit event. A hash made with older
argon2 parameters is replaced at the next successful login.

Every login runs this, around one argon2id verify, so it reads and writes with
Core statements (the columns it needs, no ORM objects): the unit of work's
loading and flushing cost more than the statements, and the code after the
verify runs with caches the hash has just swept through.
"""

from __future__ import annotations

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import InvalidEmail, LoginBlocked, LoginFailed
from idp.accounts.passwords import passwords_for
from idp.audit.events import record
from idp.db.engine import Prebuilt
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
# The account's changes after a success (the login time, a rehash), as parameters.
_LOGGED_IN = Prebuilt(update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account")))


def authenticate(
    session: Session, settings: Settings, *, email: str, password: str, ip: str | None
) -> int:
    """The id of the account whose email and password these are; raise LoginFailed or
    LoginBlocked.

    Failures are recorded in ``session``: the caller commits even when this raises.
    """
    try:
        login_id = normalise_email(email)
    except InvalidEmail:
        login_id = email.strip().lower()[:320]
    email_key = throttle.email_key(login_id)
    ip_key = throttle.ip_key(ip)
    (found,) = _FIND.execute(session, {"email": login_id, "email_key": email_key, "ip_key": ip_key})
    account = found if found.id is not None else None
    account_id = account.id if account else None

    wait, counted = throttle.summarise(
        [
            (found.email_key, found.email_blocked_until),
            (found.ip_key, found.ip_blocked_until),
        ]
    )
    if wait:
        record(session, "login.blocked", account_id=account_id, ip=ip, data={"wait": wait})
        raise LoginBlocked("login.blocked", seconds=wait)

    usable = account is not None and account.disabled_at is None
    hasher = passwords_for(settings)
    if not hasher.verify(account.password_hash if usable else None, password):
        failure = throttle.record_failure(
            session, email_key, settings, free=settings.login_free_attempts, lockout=True
        )
        if ip_key:
            throttle.record_failure(
                session, ip_key, settings, free=settings.login_ip_free_attempts, lockout=False
            )
        record(
            session,
            "login.failure",
            account_id=account_id,
            ip=ip,
            data={
                "reason": "password" if account else "unknown_email",
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

    assert account is not None and account.password_hash is not None
    changes: dict[str, object] = {"last_login_at": clock.now()}
    if hasher.needs_rehash(account.password_hash):
        changes["password_hash"] = hasher.hash(password)
    if email_key in counted:
        # Only a counter that existed when the attempt began is cleared: one a concurrent
        # wrong guess created meanwhile stays (and a login with none writes nothing here).
        throttle.clear(session, email_key)
    _LOGGED_IN.execute(session, {"account": account.id, **changes})
    record(session, "login.success", account_id=account.id, ip=ip, data={"amr": ["pwd"]})
    return account.id
