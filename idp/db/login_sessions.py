"""The login sessions' store: opening one (with its account's login time), finding one by
its cookie's digest, the live sessions of an account.

Opening and finding run on every login and on every page of a signed-in principal,
so they are prebuilt statements (:class:`idp.db.engine.Prebuilt`); ending a session
changes the ORM object the unit of work holds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.loads import LOGIN_SESSION_BY_DIGEST
from idp.db.models import Account, LoginSession

_SESSIONS = LoginSession.__table__
_ACCOUNTS = Account.__table__

_INSERT = Prebuilt(insert(_SESSIONS).returning(_SESSIONS.c.id))
# The login time moves only on an account of the session's kind: a session is never
# opened for an account of another realm.
_LOGGED_IN = Prebuilt(
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.id == bindparam("login_account"),
        _ACCOUNTS.c.kind == bindparam("login_kind"),
    )
    .values(last_login_at=bindparam("login_at", type_=_ACCOUNTS.c.last_login_at.type))
    .returning(_ACCOUNTS.c.id)
)


def open(session: Session, values: dict[str, Any]) -> int | None:
    """Store a new session (``values``: every column but ``id``, ``ended_at`` and
    ``end_reason``) and set its account's last login time to its ``created_at``; the new
    session's id, or None, with nothing written, if the account is not of its ``kind``."""
    login = {
        "login_account": values["account_id"],
        "login_kind": values["kind"],
        "login_at": values["created_at"],
    }
    if not _LOGGED_IN.execute(session, login):
        return None
    (opened,) = _INSERT.execute(session, values)
    return opened.id


def by_token_digest(session: Session, digest: bytes) -> LoginSession | None:
    """The session (ended or not) whose cookie token has this digest, attached to the unit
    of work."""
    return LOGIN_SESSION_BY_DIGEST.get(session, token_digest=digest)


def live_of_account(session: Session, account_id: int) -> list[LoginSession]:
    """The account's sessions not ended yet (timed out ones too: they end when seen)."""
    return list(
        session.scalars(
            select(LoginSession).where(
                LoginSession.account_id == account_id, LoginSession.ended_at.is_(None)
            )
        )
    )
