"""Password login: throttled, the same answer for unknown and known emails.

An unknown email is checked against a dummy hash, so it costs the same time
as a wrong password for a known one and gives the same message. Every
success, failure and lockout is an audit event. A hash made with older
argon2 parameters is replaced at the next successful login.

:func:`password_login` is the whole login, in three steps: :func:`begin` reads (one
statement, outside any transaction) and reserves the attempt on its throttling
counters (compare-and-set, idp.accounts.throttle), :func:`check_password` hashes
(awaited, in the hasher's threads, no transaction open meanwhile), and one unit of
work records the outcome (:func:`conclude`) and, on a match, opens the session
(idp.accounts.signin.open_login_session). Re-authentication runs the same first
two steps and :func:`conclude`, so it is throttled and locked exactly as a login.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import sessions, throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import InvalidEmail, LoginBlocked, LoginFailed
from idp.accounts.passwords import passwords_for
from idp.accounts.realms import Realm
from idp.accounts.signin import PASSWORD, OpenedSession, open_login_session
from idp.audit.events import record
from idp.db import accounts, throttles
from idp.db.engine import Database
from idp.settings import Settings


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt, reserved on its throttling counters before its password is checked.

    ``password_hash`` is None for an unknown email or a disabled account: the check
    then runs against the dummy hash and fails.
    """

    realm: Realm
    reservation: throttle.Reservation
    account_id: int | None
    password_hash: str | None


async def password_login(
    database: Database,
    settings: Settings,
    realm: Realm,
    *,
    email: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
    replacing: str | None,
) -> OpenedSession:
    """Log in to ``realm`` with email and password; the new session. ``replacing`` is the
    browser's session cookie token, if any: that session ends (session fixation).

    Raises LoginFailed (wrong password, unknown email, disabled account) or LoginBlocked
    (the attempt must wait, or the email is locked); either is recorded and committed.
    """
    attempt = await begin(database, settings, realm, email=email, ip=ip)
    matched, new_hash = await check_password(settings, attempt, password)
    return await database.run_sync(
        partial(
            finish,
            database,
            settings,
            attempt,
            matched=matched,
            new_hash=new_hash,
            ip=ip,
            user_agent=user_agent,
            replacing=replacing,
        )
    )


def finish(
    database: Database,
    settings: Settings,
    attempt: Attempt,
    *,
    matched: bool,
    new_hash: str | None,
    ip: str | None,
    user_agent: str | None,
    replacing: str | None,
) -> OpenedSession:
    """The last step of :func:`password_login`, after the password check: one unit of work
    records the outcome (:func:`conclude`) and opens the session; raises as it does."""
    realm = attempt.realm
    with database.unit_of_work() as uow:
        try:
            account_id = conclude(uow, settings, attempt, matched=matched, new_hash=new_hash, ip=ip)
        except (LoginFailed, LoginBlocked) as exc:
            refused = exc  # raised once the failure is committed
        else:
            return open_login_session(
                uow,
                settings,
                realm,
                account_id,
                PASSWORD,
                ip=ip,
                user_agent=user_agent,
                replacing=sessions.load_session(uow, replacing, realm, settings),
            )
    raise refused


async def begin(
    database: Database, settings: Settings, realm: Realm, *, email: str, ip: str | None
) -> Attempt:
    """Find the account of ``realm`` and reserve the attempt on its throttling counters;
    raise LoginBlocked while it must wait (recorded in a unit of work of its own).

    One read outside any transaction (awaited on PostgreSQL, at once on SQLite): a login
    that must wait is refused on what is committed now, writing nothing but its audit
    event. Otherwise the attempt is counted before its hash runs (throttle.reserve), so
    concurrent attempts cannot all pass one check.
    """
    try:
        login_id = normalise_email(email)
    except InvalidEmail:
        login_id = email.strip().lower()[:320]
    email_key = throttle.email_key(realm, login_id)
    ip_key = throttle.ip_key(realm, ip)
    found = await throttles.login_lookup(
        database, email=login_id, kind=realm.kind, email_key=email_key, ip_key=ip_key
    )
    wait = throttle.summarise(
        [
            (found.email_counter, found.email_blocked_until),
            (found.ip_counter, found.ip_blocked_until),
        ],
        clock.now(database),
    )
    if not wait:
        try:
            reservation = await throttle.reserve(
                database, settings, email_key=email_key, ip_key=ip_key
            )
        except throttle.Blocked as exc:
            wait = exc.seconds
    if wait:
        await database.run_sync(
            partial(_record_blocked, database, realm, found.account_id, ip, wait)
        )
        raise LoginBlocked("login.blocked", seconds=wait)
    usable = found.account_id is not None and found.disabled_at is None
    return Attempt(realm, reservation, found.account_id, found.password_hash if usable else None)


def _record_blocked(
    database: Database, realm: Realm, account_id: int | None, ip: str | None, wait: int
) -> None:
    with database.unit_of_work() as session:
        record(
            session, realm.event("login.blocked"), account_id=account_id, ip=ip, data={"wait": wait}
        )


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
) -> int:
    """Record the outcome of the password check; the account's id, or raise LoginFailed or
    LoginBlocked (this attempt locked the email, or attempts that began after it did).
    A success releases the attempt's reservations; what it leads to (a session, a
    re-authentication) is the caller's to record.

    ``matched``: the password matched ``attempt.password_hash``; ``new_hash``: the same
    password hashed with the current parameters, where its stored hash is stale.
    Failures are recorded in ``session``: the caller commits even when this raises.
    """
    realm = attempt.realm
    account_id = attempt.account_id
    reservation = attempt.reservation
    if not matched:
        # The attempt was counted when it was reserved: only the audit is left to write.
        record(
            session,
            realm.event("login.failure"),
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
                realm.event("login.lockout"),
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
    if not throttle.release_on_success(session, reservation, settings):
        record(
            session,
            realm.event("login.blocked"),
            account_id=account_id,
            ip=ip,
            data={"locked": True},
        )
        raise _locked_meanwhile(settings)
    if new_hash is not None:
        accounts.replace_password_hash(session, account_id, new_hash)
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
