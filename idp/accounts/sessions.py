"""Single sign-on sessions: found by the cookie's secret, extended by further methods, ended.

The cookie carries a 256-bit random token; the database keeps only its
SHA-256 digest. A session records each authentication method (RFC 8176
``amr`` value) with its time, so the assurance policy can compute the
session's ``acr`` and freshness. Each session belongs to a realm
(idp.accounts.realms), whose idle and absolute timeouts apply and whose pages
alone accept it. Sessions are opened only by the sign-in flow
(idp.accounts.signin.open_login_session).

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
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, object_session

from idp import clock
from idp.accounts.realms import Realm
from idp.db import login_sessions
from idp.db.models import LoginSession
from idp.settings import Settings


def token_digest(token: str) -> bytes:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).digest()


def method_entry(
    method: str, at: datetime, *, binding: str | None = None, factor: int | None = None
) -> dict[str, Any]:
    """One entry of a session's ``methods``: an amr value used at ``at``; ``binding`` is how
    a second factor was bound (the assurance policy needs it), ``factor`` its id."""
    entry: dict[str, Any] = {"method": method, "at": at.isoformat()}
    if binding is not None:
        entry["binding"] = binding
    if factor is not None:
        entry["factor"] = factor
    return entry


def load_session(
    session: Session, token: str | None, realm: Realm, settings: Settings
) -> LoginSession | None:
    """The live session of ``realm`` for a cookie token, touched; None if unknown, of another
    realm, ended or timed out."""
    if not token or len(token) > 128:
        return None
    row = login_sessions.by_token_digest(session, token_digest(token))
    if row is None or row.ended_at is not None or row.kind != realm.kind:
        return None
    now = clock.now(session)
    if now >= row.expires_at:
        end_session(session, row, "expired")
        return None
    if now - row.last_seen_at >= realm.idle_timeout(settings):
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
    row.methods = [*row.methods, method_entry(method, now, binding=binding, factor=factor)]
    row.last_seen_at = now


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
    rows = login_sessions.live_of_account(session, account_id)
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
