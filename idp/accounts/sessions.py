"""Single sign-on sessions: created at login, found by the cookie's secret, ended.

The cookie carries a 256-bit random token; the database keeps only its
SHA-256 digest. A session records each authentication method (RFC 8176
``amr`` value) with its time, so the assurance policy can compute the
session's ``acr`` and freshness. Idle and absolute timeouts come from settings.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.db.models import Account, LoginSession
from idp.settings import Settings


def token_digest(token: str) -> bytes:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).digest()


def start_session(
    session: Session,
    account: Account,
    methods: list[str],
    settings: Settings,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, LoginSession]:
    """Open a session for ``account`` authenticated by ``methods``; return (cookie token, row)."""
    now = clock.now()
    token = secrets.token_urlsafe(32)
    row = LoginSession(
        token_digest=token_digest(token),
        sid=secrets.token_urlsafe(16),
        account_id=account.id,
        created_at=now,
        auth_time=now,
        methods=[{"method": method, "at": now.isoformat()} for method in methods],
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.session_max_hours),
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(row)
    session.flush()
    return token, row


def load_session(session: Session, token: str | None, settings: Settings) -> LoginSession | None:
    """The live session for a cookie token, touched; None if unknown, ended or timed out."""
    if not token or len(token) > 128:
        return None
    row = session.scalar(
        select(LoginSession).where(LoginSession.token_digest == token_digest(token))
    )
    if row is None or row.ended_at is not None:
        return None
    now = clock.now()
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


def add_method(row: LoginSession, method: str, *, binding: str | None = None) -> None:
    """Record a further authentication (step-up) in this session, now.

    ``binding`` is how a second factor was bound (proofing, high_session, low_session),
    which the assurance policy needs.
    """
    now = clock.now()
    entry = {"method": method, "at": now.isoformat()}
    if binding is not None:
        entry["binding"] = binding
    row.methods = [*row.methods, entry]
    row.last_seen_at = now


def reauthenticate(row: LoginSession, methods: list[str]) -> None:
    """A fresh login in an existing session: new auth_time, methods start over."""
    now = clock.now()
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


def end_session(session: Session, row: LoginSession, reason: str) -> None:
    """End one session (logout, timeout, revocation)."""
    row.ended_at = clock.now()
    row.end_reason = reason


def end_all_sessions(session: Session, account_id: int, reason: str) -> int:
    """End every live session of an account (password reset, revocation); return how many."""
    result = session.execute(
        update(LoginSession)
        .where(LoginSession.account_id == account_id, LoginSession.ended_at.is_(None))
        .values(ended_at=clock.now(), end_reason=reason)
    )
    return result.rowcount
