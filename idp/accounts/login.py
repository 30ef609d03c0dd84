"""Password login: throttled, the same answer for unknown and known emails.

An unknown email is checked against a dummy hash, so it costs the same time
as a wrong password for a known one and gives the same message. Every
success, failure and lockout is an audit event. A hash made with older
argon2 parameters is replaced at the next successful login.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import InvalidEmail, LoginBlocked, LoginFailed
from idp.accounts.passwords import passwords_for
from idp.audit.events import record
from idp.db.models import Account
from idp.settings import Settings


def authenticate(
    session: Session, settings: Settings, *, email: str, password: str, ip: str | None
) -> Account:
    """The account whose email and password these are; raise LoginFailed or LoginBlocked.

    Failures are recorded in ``session``: the caller commits even when this raises.
    """
    try:
        login_id = normalise_email(email)
    except InvalidEmail:
        login_id = email.strip().lower()[:320]
    email_key = throttle.email_key(login_id)
    ip_key = throttle.ip_key(ip)
    keys = [email_key, ip_key] if ip_key else [email_key]
    account = session.scalar(select(Account).where(Account.email == login_id))
    account_id = account.id if account else None

    wait = throttle.wait_seconds(session, keys)
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
    if hasher.needs_rehash(account.password_hash):
        account.password_hash = hasher.hash(password)
    throttle.clear(session, email_key)
    account.last_login_at = clock.now()
    record(session, "login.success", account_id=account.id, ip=ip, data={"amr": ["pwd"]})
    return account
