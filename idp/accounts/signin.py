"""Signing in and out: the one way a login session is opened, and the way one is closed.

Every way in (the password login, registration's auto-login; next the eID and the
staff login) ends in :func:`open_login_session`, which owns what a sign-in must get
right whatever proved it:

- session fixation: a fresh session with a new secret and ``sid``, never the
  browser's old one, which ends (``replaced``) and so is announced to its clients
  by back-channel logout (idp.oidc.backchannel, in this unit of work);
- the methods proven (RFC 8176 ``amr`` values, with the factor and its binding for
  a second factor), all at ``auth_time``, the session's start;
- the account's ``last_login_at`` (the same statement refuses an account of
  another realm) and the realm's session timeouts;
- the audit event (``login.success``, named per realm).

:func:`close_login_session` is the logout: the session ends and the event is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import sessions
from idp.accounts.realms import Realm
from idp.audit.events import record
from idp.db import login_sessions
from idp.db.models import LoginSession
from idp.settings import Settings

MAX_USER_AGENT = 255


@dataclass(frozen=True, slots=True)
class Proven:
    """One authentication method proven at sign-in: its RFC 8176 ``amr`` value and, for a
    second factor, the factor's id and how it was bound."""

    amr: str
    factor: int | None = None
    binding: str | None = None


PASSWORD = (Proven("pwd"),)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A login session just opened: the cookie's token (never stored), its row's id, its
    ``sid`` and its ``auth_time``."""

    token: str
    id: int
    sid: str
    auth_time: datetime


class WrongRealm(ValueError):
    """A sign-in was asked for an account, or to replace a session, of another realm."""


def open_login_session(
    uow: Session,
    settings: Settings,
    realm: Realm,
    account_id: int,
    proven: Sequence[Proven],
    *,
    ip: str | None,
    user_agent: str | None,
    replacing: LoginSession | None,
) -> OpenedSession:
    """Open a session of ``realm`` for the account that ``proven`` authenticated, ending
    ``replacing`` (the browser's session before, if any); in the caller's unit of work.

    Raises :class:`WrongRealm` if the account or ``replacing`` is not of ``realm``'s kind.
    """
    if replacing is not None:
        if replacing.kind != realm.kind:
            raise WrongRealm(f"a {replacing.kind} session cannot be replaced by a {realm.kind} one")
        sessions.end_session(uow, replacing, "replaced")
    now = clock.now(uow)
    token = secrets.token_urlsafe(32)
    sid = secrets.token_urlsafe(16)
    opened = login_sessions.open(
        uow,
        {
            "token_digest": sessions.token_digest(token),
            "sid": sid,
            "account_id": account_id,
            "kind": realm.kind,
            "created_at": now,
            "auth_time": now,
            "methods": [
                sessions.method_entry(p.amr, now, binding=p.binding, factor=p.factor)
                for p in proven
            ],
            "last_seen_at": now,
            "expires_at": now + realm.lifetime(settings),
            "ip": ip,
            "user_agent": (user_agent or "")[:MAX_USER_AGENT] or None,
        },
    )
    if opened is None:
        raise WrongRealm(f"account {account_id} is not a {realm.kind} account")
    record(
        uow,
        realm.event("login.success"),
        account_id=account_id,
        ip=ip,
        data={"amr": [p.amr for p in proven]},
    )
    return OpenedSession(token, opened, sid, now)


def close_login_session(uow: Session, realm: Realm, row: LoginSession, *, ip: str | None) -> None:
    """Log out of ``row`` (a live session of ``realm``): it ends, its clients are told
    (back-channel logout), and the logout is audited."""
    if row.kind != realm.kind:
        raise WrongRealm(f"a {row.kind} session cannot be closed as a {realm.kind} one")
    sessions.end_session(uow, row, "logout")
    record(uow, realm.event("logout"), account_id=row.account_id, ip=ip)
