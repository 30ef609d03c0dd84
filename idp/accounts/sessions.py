"""Single sign-on sessions: created at login, found by the cookie's secret, ended.

The cookie carries a 256-bit random token; the database keeps only its
SHA-256 digest. A session records each authentication method (RFC 8176
``amr`` value) with its time, so the assurance policy can compute the
session's ``acr`` and freshness. Idle and absolute timeouts come from settings.

Sessions end only through :func:`end_session` and :func:`end_all_sessions`
(logout, a new login replacing the old session, password reset, timeouts).
Both note the ended rows in the unit of work; whoever must act on that
before the transaction commits takes them with :func:`take_ended` (the OIDC
layer tells the session's clients: idp/oidc/backchannel.py). Ending every
session of an account also notes the account (:func:`take_signed_out`): the
OIDC layer then revokes all of its grants, ``offline_access`` ones too.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session, object_session

from idp import clock
from idp.db.engine import Prebuilt
from idp.db.loads import LOGIN_SESSION_BY_DIGEST
from idp.db.models import Account, LoginSession
from idp.settings import Settings


def token_digest(token: str) -> bytes:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).digest()


_SESSIONS = LoginSession.__table__
_ACCOUNTS = Account.__table__
# Built once: each login passes its values as parameters.
_OPEN = Prebuilt(insert(_SESSIONS).returning(_SESSIONS.c.id))


# Every session opened is a login: the account's last login time is the newest one's.
_LOGGED_IN = Prebuilt(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("login_account", type_=_ACCOUNTS.c.id.type))
    .values(last_login_at=bindparam("login_at", type_=_ACCOUNTS.c.last_login_at.type))
)


def open_session(
    session: Session,
    account_id: int,
    methods: list[str],
    settings: Settings,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, int]:
    """Open a session for the account authenticated by ``methods``; return (cookie token, id).

    Core statements, no ORM object: every password login opens one, and the unit of
    work's flush cost more than the statements. The account's last login time is set.
    """
    token, values = new_session(
        account_id, methods, settings, now=clock.now(session), ip=ip, user_agent=user_agent
    )
    (opened,) = _OPEN.execute(session, values)
    _LOGGED_IN.execute(session, _login_time(values))
    return token, opened.id


def _login_time(values: dict[str, Any]) -> dict[str, Any]:
    return {"login_account": values["account_id"], "login_at": values["created_at"]}


def new_session(
    account_id: int,
    methods: list[str],
    settings: Settings,
    *,
    now: datetime,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new session's cookie token and its row's values (:func:`open_session` stores them),
    opened ``now``."""
    token = secrets.token_urlsafe(32)
    return token, {
        "token_digest": token_digest(token),
        "sid": secrets.token_urlsafe(16),
        "account_id": account_id,
        "created_at": now,
        "auth_time": now,
        "methods": [{"method": method, "at": now.isoformat()} for method in methods],
        "last_seen_at": now,
        "expires_at": now + timedelta(hours=settings.session_max_hours),
        "ip": ip,
        "user_agent": (user_agent or "")[:255] or None,
    }


def start_session(
    session: Session,
    account: Account,
    methods: list[str],
    settings: Settings,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, LoginSession]:
    """:func:`open_session`, returning the session's row to work with (cookie token, row)."""
    if account.id is None:  # added in this unit of work and not written yet
        session.flush()
    token, session_id = open_session(
        session, account.id, methods, settings, ip=ip, user_agent=user_agent
    )
    row = session.get(LoginSession, session_id)
    assert row is not None
    return token, row


def load_session(session: Session, token: str | None, settings: Settings) -> LoginSession | None:
    """The live session for a cookie token, touched; None if unknown, ended or timed out."""
    if not token or len(token) > 128:
        return None
    # every page of a signed-in citizen reads it: one prebuilt statement
    row = LOGIN_SESSION_BY_DIGEST.get(session, token_digest=token_digest(token))
    if row is None or row.ended_at is not None:
        return None
    now = clock.now(session)
    if now >= row.expires_at:
        end_session(session, row, "expired")
        return None
    if now - row.last_seen_at >= timedelta(minutes=settings.session_idle_minutes):
        end_session(session, row, "idle")
        return None
    # Touch at most once a minute: a read-mostly page view should not always write.
    if now - row.last_seen_at >= timedelta(minutes=1):
        row.last_seen_at = now
    return row


def add_method(
    row: LoginSession, method: str, *, binding: str | None = None, factor: int | None = None
) -> None:
    """Record a further authentication (step-up, re-authentication) in this session, now
    (on the clock of the unit of work ``row`` belongs to).

    ``binding`` is how a second factor was bound (proofing, high_session, low_session),
    which the assurance policy needs; ``factor`` is its id (proofing binds the factors
    used in its session, and re-authentication asks which were used when).
    """
    now = clock.now(object_session(row))
    entry: dict[str, Any] = {"method": method, "at": now.isoformat()}
    if binding is not None:
        entry["binding"] = binding
    if factor is not None:
        entry["factor"] = factor
    row.methods = [*row.methods, entry]
    row.last_seen_at = now


def reauthenticate(row: LoginSession, methods: list[str]) -> None:
    """A fresh login in an existing session: new auth_time, methods start over."""
    now = clock.now(object_session(row))
    row.auth_time = now
    row.methods = [{"method": method, "at": now.isoformat()} for method in methods]
    row.last_seen_at = now


def method_times(row: LoginSession) -> dict[str, datetime]:
    """The latest time each method was used in this session."""
    times: dict[str, datetime] = {}
    for entry in row.methods:
        at = datetime.fromisoformat(entry["at"])
        if entry["method"] not in times or at > times[entry["method"]]:
            times[entry["method"]] = at
    return times


ENDED = "idp.ended_login_sessions"  # key in the unit of work's Session.info


def end_session(session: Session, row: LoginSession, reason: str) -> None:
    """End one session (logout, replaced by a new login, timeout, revocation)."""
    _end(session, [row], reason)


SIGNED_OUT = "idp.signed_out_accounts"  # key in the unit of work's Session.info


def end_all_sessions(session: Session, account_id: int, reason: str) -> int:
    """End every live session of an account (password reset, revocation); return how many.

    The account is noted as signed out everywhere (:func:`take_signed_out`), live
    sessions or not: what it granted apps must end too.
    """
    rows = session.scalars(
        select(LoginSession).where(
            LoginSession.account_id == account_id, LoginSession.ended_at.is_(None)
        )
    ).all()
    _end(session, rows, reason)
    session.info.setdefault(SIGNED_OUT, []).append((account_id, reason))
    return len(rows)


def _end(session: Session, rows: Sequence[LoginSession], reason: str) -> None:
    now = clock.now(session)
    for row in rows:
        row.ended_at = now
        row.end_reason = reason
    session.info.setdefault(ENDED, []).extend(rows)


def take_ended(session: Session) -> list[LoginSession]:
    """The sessions ended in this unit of work since the last call, each returned once."""
    return session.info.pop(ENDED, [])


def take_signed_out(session: Session) -> list[tuple[int, str]]:
    """(account id, reason) of each account signed out everywhere in this unit of work since
    the last call, each returned once."""
    return session.info.pop(SIGNED_OUT, [])
