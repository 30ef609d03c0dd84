"""Grants: what one login gave one client, the family of its tokens.

A grant is recorded when an authorization code is redeemed; its refresh tokens belong
to it (idp/db/refresh_tokens.py) and its access tokens carry its id. Revoking it (a
logout, a reused refresh token, a replayed code, a withdrawn consent) revokes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.models import Grant, LoginSession, RefreshToken

# Every code exchange records a grant: one prebuilt insert, not an ORM object.
_START = Prebuilt(insert(Grant.__table__))


def start(
    uow: Session,
    grant_id: str,
    *,
    client_id: str,
    account_id: int,
    login_session_id: int | None,
    sid: str | None,
    scope: str,
    claims: dict[str, Any] | None,
    auth_time: datetime,
    acr: str | None,
    amr: list[str],
    now: datetime,
    expires_at: datetime,
) -> None:
    """Record a new, live grant."""
    _START.execute(
        uow,
        {
            "id": grant_id,
            "client_id": client_id,
            "account_id": account_id,
            "login_session_id": login_session_id,
            "sid": sid,
            "scope": scope,
            "claims": claims,
            "auth_time": auth_time,
            "acr": acr,
            "amr": amr,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
            "revoke_reason": None,
        },
    )


@dataclass(frozen=True, slots=True)
class Revoked:
    """Whose grant was revoked: its account and its client."""

    account_id: int
    client_id: str


def revoke(uow: Session, grant_id: str, reason: str, now: datetime) -> Revoked | None:
    """Revoke the grant if it is live (``reason`` kept with it); whose it was, or None if
    it was revoked already or never existed."""
    row = uow.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
        .returning(Grant.account_id, Grant.client_id)
    ).first()
    return Revoked(row.account_id, row.client_id) if row is not None else None


def live_of_account(uow: Session, account_id: int, now: datetime, idle: timedelta) -> list[Grant]:
    """The account's grants that still give an app access, oldest first: unrevoked,
    unexpired, and with a live refresh token or a login session that has not ended,
    expired or idled out (``idle`` without use)."""
    live_refresh = exists().where(
        RefreshToken.grant_id == Grant.id,
        RefreshToken.used_at.is_(None),
        RefreshToken.expires_at > now,
    )
    live_session = exists().where(
        LoginSession.id == Grant.login_session_id,
        LoginSession.ended_at.is_(None),
        LoginSession.expires_at > now,
        LoginSession.last_seen_at > now - idle,
    )
    return list(
        uow.scalars(
            select(Grant)
            .where(
                Grant.account_id == account_id,
                Grant.revoked_at.is_(None),
                Grant.expires_at > now,
                or_(live_refresh, live_session),
            )
            .order_by(Grant.created_at)
        )
    )


def unrevoked_ids(uow: Session, account_id: int, client_id: str) -> list[str]:
    """The ids of the account's grants to the client that are not revoked."""
    return list(
        uow.scalars(
            select(Grant.id).where(
                Grant.account_id == account_id,
                Grant.client_id == client_id,
                Grant.revoked_at.is_(None),
            )
        )
    )


def of_login_session(uow: Session, login_session_id: int) -> list[Grant]:
    """Every grant made in the login session, whatever its state."""
    return list(uow.scalars(select(Grant).where(Grant.login_session_id == login_session_id)))


def unexpired_of_account(uow: Session, account_id: int, now: datetime) -> list[Grant]:
    """The account's grants that are neither revoked nor expired."""
    return list(
        uow.scalars(
            select(Grant).where(
                Grant.account_id == account_id,
                Grant.revoked_at.is_(None),
                Grant.expires_at > now,
            )
        )
    )
