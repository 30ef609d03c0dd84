"""Consent: which scopes a citizen allowed which client, remembered until withdrawn.

A new request is asked again only for scopes beyond those allowed. The apps a
citizen sees (:func:`apps_of`) are those with a consent and those holding a
live grant (first-party apps ask no consent but hold grants all the same).
Withdrawing forgets the consent and revokes the client's grants for the
account, so its refresh tokens and access tokens stop working at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.audit.events import record
from idp.db.engine import Prebuilt
from idp.db.models import Consent, Grant, LoginSession, RefreshToken
from idp.oidc import tokens


@dataclass(frozen=True, slots=True)
class GivenConsent:
    client_id: str
    scopes: tuple[str, ...]
    granted_at: datetime


_CONSENTS = Consent.__table__
# Built once (every consent page and decision reads it, on the cursor: idp.db.engine.
# Prebuilt); the values are parameters.
_CONSENTED = Prebuilt(
    select(_CONSENTS.c.scopes).where(
        _CONSENTS.c.account_id == bindparam("account_id"),
        _CONSENTS.c.client_id == bindparam("client_id"),
    )
)


def consented_scopes(uow: Session, account_id: int, client_id: str) -> frozenset[str]:
    """The scopes the account allowed the client (empty if none)."""
    rows = _CONSENTED.execute(uow, {"account_id": account_id, "client_id": client_id})
    return frozenset(rows[0].scopes or ()) if rows else frozenset()


# The stored scopes joined with the newly allowed ones (``excluded``), sorted, in the
# upsert's SET: the database computes the union on the row it has locked, so a
# concurrent consent is neither lost nor collides.
_UNION = {
    "postgresql": literal_column(
        "(SELECT coalesce(json_agg(s ORDER BY s), '[]'::json) FROM ("
        "SELECT json_array_elements_text(consents.scopes) AS s"
        " UNION SELECT json_array_elements_text(excluded.scopes)) AS u)"
    ),
    "sqlite": literal_column(
        "(SELECT json_group_array(value) FROM ("
        "SELECT value FROM json_each(consents.scopes)"
        " UNION SELECT value FROM json_each(excluded.scopes) ORDER BY value))"
    ),
}


def _upsert(dialect: str) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_CONSENTS)
    return insert.on_conflict_do_update(
        index_elements=["account_id", "client_id"],
        set_={"scopes": _UNION[dialect], "granted_at": insert.excluded.granted_at},
    )


# Built once per dialect; the row's values are parameters.
_UPSERT = {dialect: Prebuilt(_upsert(dialect)) for dialect in _UNION}


def give_consent(
    uow: Session, account_id: int, client_id: str, scopes: frozenset[str], ip: str | None = None
) -> None:
    """Remember that the account allowed ``scopes`` to the client (added to earlier ones).

    One insert-or-update: the same citizen may consent to the same client in two
    requests at once (two tabs, a double submit), and a read followed by an insert
    let both insert into the unique (account, client) row, the later one failing.
    Both decisions are kept (the union): each was the citizen's, and remembering
    only the later would ask again for data the citizen allowed a moment before.
    """
    _UPSERT[uow.get_bind().dialect.name].execute(
        uow,
        {
            "account_id": account_id,
            "client_id": client_id,
            "scopes": sorted(scopes),
            "granted_at": clock.now(uow),
        },
    )
    record(
        uow,
        "oidc.consent_given",
        account_id=account_id,
        client_id=client_id,
        ip=ip,
        data={"scopes": sorted(scopes)},
    )


def consents_of(uow: Session, account_id: int) -> list[GivenConsent]:
    """Every consent the account gave, newest first."""
    rows = uow.scalars(
        select(Consent).where(Consent.account_id == account_id).order_by(Consent.granted_at.desc())
    )
    return [GivenConsent(r.client_id, tuple(r.scopes), r.granted_at) for r in rows]


@dataclass(frozen=True, slots=True)
class App:
    """An app the citizen allowed data to or that holds a live grant of the account."""

    client_id: str
    scopes: tuple[str, ...]  # consented and held by live grants, sorted
    since: datetime  # the consent's time, else the oldest live grant's


def live_grants_of(uow: Session, account_id: int, idle: timedelta) -> list[Grant]:
    """The account's grants that still give an app access: unrevoked, unexpired, and with a
    live refresh token or a login session that has not ended, expired or idled out."""
    now = clock.now(uow)
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


def apps_of(uow: Session, account_id: int, idle: timedelta) -> list[App]:
    """Every app with a consent or a live grant of the account, newest first."""
    found: dict[str, tuple[set[str], datetime]] = {
        given.client_id: (set(given.scopes), given.granted_at)
        for given in consents_of(uow, account_id)
    }
    for grant in live_grants_of(uow, account_id, idle):
        scopes, since = found.get(grant.client_id, (set(), grant.created_at))
        found[grant.client_id] = (scopes | set(grant.scope.split()), since)
    apps = [App(client, tuple(sorted(scopes)), since) for client, (scopes, since) in found.items()]
    return sorted(apps, key=lambda app: app.since, reverse=True)


def withdraw_consent(uow: Session, account_id: int, client_id: str, ip: str | None = None) -> bool:
    """Forget the consent and revoke the client's grants for the account; True if there was
    either."""
    removed = uow.execute(
        delete(Consent).where(Consent.account_id == account_id, Consent.client_id == client_id)
    ).rowcount
    grant_ids = uow.scalars(
        select(Grant.id).where(
            Grant.account_id == account_id,
            Grant.client_id == client_id,
            Grant.revoked_at.is_(None),
        )
    ).all()
    for grant_id in grant_ids:
        tokens.revoke_grant(uow, grant_id, "consent_withdrawn")
    if removed or grant_ids:
        record(uow, "oidc.consent_withdrawn", account_id=account_id, client_id=client_id, ip=ip)
    return bool(removed or grant_ids)
