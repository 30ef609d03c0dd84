"""Consents: which scopes an account allowed which client, kept until withdrawn."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.models import Consent

_CONSENTS = Consent.__table__
# Every consent page and decision reads it.
_SCOPES = Prebuilt(
    select(_CONSENTS.c.scopes).where(
        _CONSENTS.c.account_id == bindparam("account_id"),
        _CONSENTS.c.client_id == bindparam("client_id"),
    )
)

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


_ADD = {dialect: Prebuilt(_upsert(dialect)) for dialect in _UNION}


def scopes_of(uow: Session, account_id: int, client_id: str) -> frozenset[str]:
    """The scopes the account allowed the client (empty if none)."""
    rows = _SCOPES.execute(uow, {"account_id": account_id, "client_id": client_id})
    return frozenset(rows[0].scopes or ()) if rows else frozenset()


def add(
    uow: Session, account_id: int, client_id: str, scopes: Iterable[str], now: datetime
) -> None:
    """Add ``scopes`` to what the account allowed the client, in one insert-or-update.

    The same citizen may consent to the same client in two requests at once (two tabs,
    a double submit): a read followed by an insert let both insert into the unique
    (account, client) row, the later one failing. Both decisions are kept (the union).
    """
    _ADD[uow.get_bind().dialect.name].execute(
        uow,
        {
            "account_id": account_id,
            "client_id": client_id,
            "scopes": sorted(scopes),
            "granted_at": now,
        },
    )


def of_account(uow: Session, account_id: int) -> list[Consent]:
    """Every consent the account gave, newest first."""
    return list(
        uow.scalars(
            select(Consent)
            .where(Consent.account_id == account_id)
            .order_by(Consent.granted_at.desc())
        )
    )


def forget(uow: Session, account_id: int, client_id: str) -> bool:
    """Forget what the account allowed the client; True if there was a consent."""
    removed = uow.execute(
        delete(Consent).where(Consent.account_id == account_id, Consent.client_id == client_id)
    ).rowcount
    return bool(removed)
