"""Access tokens: JWTs written nowhere; what is stored is the ``jti`` of one revoked before
it expired (RFC 7009), and what is read is whether a presented one is still live: not
revoked itself, nor through its grant.

The liveness reads are the hottest of the protocol endpoints (introspection, userinfo):
prebuilt statements on a pooled connection's cursor, outside any transaction (they see
what is committed), awaited on PostgreSQL (:func:`~idp.db.engine.read_row_awaited`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.engine import Database, Prebuilt, read_row, read_row_awaited
from idp.db.models import Account, Grant, RevokedAccessToken

_REVOKED = RevokedAccessToken.__table__
_GRANTS, _ACCOUNTS = Grant.__table__, Account.__table__
_NOT_REVOKED = ~exists().where(_REVOKED.c.jti == bindparam("jti"))
_TOKEN_LIVE = Prebuilt(select(_NOT_REVOKED))
_TOKEN_AND_GRANT_LIVE = Prebuilt(
    select(_GRANTS.c.id).where(
        _GRANTS.c.id == bindparam("grant_id"), _GRANTS.c.revoked_at.is_(None), _NOT_REVOKED
    )
)

# The account's columns its claims are released from (idp.oidc.claims.release).
ACCOUNT_COLUMNS = (
    "id",
    "subject",
    "email",
    "email_verified_at",
    "locale",
    "given_name",
    "family_name",
    "updated_at",
)
# One round trip: the live grant, its account (not disabled), and that the token itself
# is not revoked. Core columns, not the ORM entity: no identity map, only what is needed.
_LIVE_GRANT_AND_ACCOUNT = Prebuilt(
    select(_GRANTS.c.claims, *(_ACCOUNTS.c[name] for name in ACCOUNT_COLUMNS))
    .select_from(_GRANTS.join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id))
    .where(
        _GRANTS.c.id == bindparam("grant_id"),
        _GRANTS.c.revoked_at.is_(None),
        _ACCOUNTS.c.disabled_at.is_(None),
        _NOT_REVOKED,
    )
)


def revoke(uow: Session, jti: str, now: datetime, expires_at: datetime) -> None:
    """Remember the access token ``jti`` as revoked until it expires.

    Insert-or-nothing: a client may revoke one token twice at once (a retry, two
    nodes), and a read followed by an insert let the later request collide with the
    earlier one's row. Revoking a revoked token changes nothing.
    """
    dialect = postgresql if uow.get_bind().dialect.name == "postgresql" else sqlite
    uow.execute(
        dialect.insert(RevokedAccessToken)
        .values(jti=jti, revoked_at=now, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )


def live(session: Session, jti: str, grant_id: str | None) -> bool:
    """Whether the access token ``jti`` (of the grant ``grant_id``, if it has one) is
    neither revoked itself nor through its grant. Read on a raw cursor, outside the
    session's transaction: it sees what is committed."""
    statement, params = _liveness(jti, grant_id)
    return _live(grant_id, read_row(session.get_bind(), statement, params))


async def live_awaited(database: Database, jti: str, grant_id: str | None) -> bool:
    """:func:`live`, its round trip awaited on PostgreSQL."""
    statement, params = _liveness(jti, grant_id)
    return _live(grant_id, await read_row_awaited(database, statement, params))


def _liveness(jti: str, grant_id: str | None) -> tuple[Prebuilt, dict[str, Any]]:
    if grant_id is None:
        return _TOKEN_LIVE, {"jti": jti}
    return _TOKEN_AND_GRANT_LIVE, {"grant_id": grant_id, "jti": jti}


def _live(grant_id: str | None, row: tuple[Any, ...] | None) -> bool:
    if grant_id is None:
        return bool(row and row[0])
    return row is not None


@dataclass(frozen=True, slots=True)
class LiveGrant:
    """The live grant behind an access token: the ``claims`` parameter it was asked with,
    and its account (the :data:`ACCOUNT_COLUMNS` only, not attached to any session)."""

    claims: dict[str, Any] | None
    account: Account


async def live_grant_awaited(database: Database, grant_id: str, jti: str) -> LiveGrant | None:
    """The grant ``grant_id`` and its account, if the grant is live, the account not
    disabled and the access token ``jti`` not revoked; else None. One round trip, awaited
    on PostgreSQL."""
    found = await read_row_awaited(
        database, _LIVE_GRANT_AND_ACCOUNT, {"grant_id": grant_id, "jti": jti}
    )
    if found is None:
        return None
    account = Account(**dict(zip(ACCOUNT_COLUMNS, found[1:], strict=True)))
    return LiveGrant(found[0], account)
