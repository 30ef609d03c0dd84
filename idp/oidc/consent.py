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

from sqlalchemy.orm import Session

from idp import clock
from idp.audit.events import record
from idp.db import consents, grants
from idp.oidc import tokens


@dataclass(frozen=True, slots=True)
class GivenConsent:
    client_id: str
    scopes: tuple[str, ...]
    granted_at: datetime


def give_consent(
    uow: Session, account_id: int, client_id: str, scopes: frozenset[str], ip: str | None = None
) -> None:
    """Remember that the account allowed ``scopes`` to the client (added to earlier ones:
    two decisions at once, in two tabs, are both kept)."""
    consents.add(uow, account_id, client_id, scopes, clock.now(uow))
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
    return [
        GivenConsent(r.client_id, tuple(r.scopes), r.granted_at)
        for r in consents.of_account(uow, account_id)
    ]


@dataclass(frozen=True, slots=True)
class App:
    """An app the citizen allowed data to or that holds a live grant of the account."""

    client_id: str
    scopes: tuple[str, ...]  # consented and held by live grants, sorted
    since: datetime  # the consent's time, else the oldest live grant's


def apps_of(uow: Session, account_id: int, idle: timedelta) -> list[App]:
    """Every app with a consent or a live grant of the account, newest first."""
    found: dict[str, tuple[set[str], datetime]] = {
        given.client_id: (set(given.scopes), given.granted_at)
        for given in consents_of(uow, account_id)
    }
    for grant in grants.live_of_account(uow, account_id, clock.now(uow), idle):
        scopes, since = found.get(grant.client_id, (set(), grant.created_at))
        found[grant.client_id] = (scopes | set(grant.scope.split()), since)
    apps = [App(client, tuple(sorted(scopes)), since) for client, (scopes, since) in found.items()]
    return sorted(apps, key=lambda app: app.since, reverse=True)


def withdraw_consent(uow: Session, account_id: int, client_id: str, ip: str | None = None) -> bool:
    """Forget the consent and revoke the client's grants for the account; True if there was
    either."""
    removed = consents.forget(uow, account_id, client_id)
    grant_ids = grants.unrevoked_ids(uow, account_id, client_id)
    for grant_id in grant_ids:
        tokens.revoke_grant(uow, grant_id, "consent_withdrawn")
    if removed or grant_ids:
        record(uow, "oidc.consent_withdrawn", account_id=account_id, client_id=client_id, ip=ip)
    return bool(removed or grant_ids)
