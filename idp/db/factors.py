"""The second factors' store: an account's factors (TOTP apps, passkeys, sets of recovery
codes) and its recovery codes, by intent.

Factors belong to an account of any kind (citizen or staff: idp.accounts.realms); the
rules (bindings, pauses after wrong codes, what counts for a level) are
idp.accounts.factors' and its neighbours'. Counting an attempt and spending a code
are compare-and-set updates, so concurrent answers are checked one after the other.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.models import RecoveryCode, SecondFactor

_FACTORS = SecondFactor.__table__
RECOVERY_CODES = "recovery_codes"


def of_account(session: Session, account_id: int, kind: str | None = None) -> list[SecondFactor]:
    """The account's second factors (of ``kind``, if given), oldest first."""
    query = select(SecondFactor).where(SecondFactor.account_id == account_id)
    if kind is not None:
        query = query.where(SecondFactor.kind == kind)
    return list(session.scalars(query.order_by(SecondFactor.created_at, SecondFactor.id)))


def one_of_account(session: Session, account_id: int, factor_id: int) -> SecondFactor | None:
    """The account's factor with this id, or None (no such factor, or another account's)."""
    factor = session.get(SecondFactor, factor_id)
    return factor if factor is not None and factor.account_id == account_id else None


# Every authorization with a session asks it: built once, run on the cursor.
_USABLE_BINDINGS = Prebuilt(
    select(SecondFactor.binding)
    .where(
        SecondFactor.account_id == bindparam("account_id"),
        or_(
            SecondFactor.kind != RECOVERY_CODES,
            exists(
                select(RecoveryCode.id).where(
                    RecoveryCode.factor_id == SecondFactor.id, RecoveryCode.used_at.is_(None)
                )
            ),
        ),
    )
    .distinct()
)


def usable_bindings(session: Session, account_id: int) -> set[str]:
    """The bindings of the account's factors that can be used now (a set of recovery codes
    only while a code is left)."""
    if session.autoflush:
        # As an ORM query would: a recovery code just used in this unit of work counts
        # as used (a prebuilt statement runs on the cursor, without the autoflush).
        session.flush()
    rows = _USABLE_BINDINGS.execute(session, {"account_id": account_id})
    return {binding for (binding,) in rows}


def kinds_and_bindings(session: Session, account_id: int) -> set[tuple[str, str]]:
    """(kind, binding) of each of the account's factors."""
    return {
        (kind, binding)
        for kind, binding in session.execute(
            select(SecondFactor.kind, SecondFactor.binding).where(
                SecondFactor.account_id == account_id
            )
        )
    }


def bind(session: Session, account_id: int, factor_ids: Collection[int], binding: str) -> int:
    """Set how these factors of the account are bound; how many there were."""
    result = session.execute(
        update(SecondFactor)
        .where(SecondFactor.account_id == account_id, SecondFactor.id.in_(list(factor_ids)))
        .values(binding=binding)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount


def count_attempt(
    session: Session, account_id: int, kind: str, now: datetime
) -> tuple[list[SecondFactor], set[int]]:
    """Count one attempt on each of the account's factors of ``kind`` not paused at ``now``:
    (every factor of that kind, loaded afresh; the ids of those counted).

    The UPDATE comes first and takes the rows until the unit of work ends (PostgreSQL's
    row locks, SQLite's writer lock), so concurrent attempts are checked one after the
    other, each on what the one before it wrote.
    """
    counted = session.execute(
        update(_FACTORS)
        .where(
            _FACTORS.c.account_id == account_id,
            _FACTORS.c.kind == kind,
            or_(_FACTORS.c.locked_until.is_(None), _FACTORS.c.locked_until <= now),
        )
        .values(failures=_FACTORS.c.failures + 1)
        .returning(_FACTORS.c.id)
    ).all()
    rows = list(
        session.scalars(
            select(SecondFactor)
            .where(SecondFactor.account_id == account_id, SecondFactor.kind == kind)
            .order_by(SecondFactor.id)
            .execution_options(populate_existing=True)
        )
    )
    return rows, {factor_id for (factor_id,) in counted}


def add_passkey(session: Session, values: dict[str, Any]) -> int | None:
    """Store a passkey (``values``: its columns); its id, or None if its credential id is
    registered already. Insert-or-nothing on the unique credential id: two ceremonies
    answered with one credential cannot both add it."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return session.scalar(
        dialect.insert(SecondFactor)
        .values(kind="passkey", **values)
        .on_conflict_do_nothing(index_elements=["credential_id"])
        .returning(SecondFactor.id)
    )


def passkey_in_use(session: Session, account_id: int, credential_id: bytes) -> SecondFactor | None:
    """The account's passkey with this credential id, its row held until the unit of work
    ends (a concurrent use of it waits), or None."""
    return session.scalar(
        select(SecondFactor)
        .where(
            SecondFactor.account_id == account_id,
            SecondFactor.kind == "passkey",
            SecondFactor.credential_id == credential_id,
        )
        .with_for_update()
    )


def drop_recovery_codes(session: Session, account_id: int) -> None:
    """Delete the account's set of recovery codes, if any (its codes go with it)."""
    session.execute(
        delete(SecondFactor).where(
            SecondFactor.account_id == account_id, SecondFactor.kind == RECOVERY_CODES
        )
    )


def add_recovery_codes(session: Session, factor: SecondFactor, digests: list[bytes]) -> None:
    """Store a new set of recovery codes (its factor and each code's digest)."""
    session.add(factor)
    session.flush()
    session.add_all(RecoveryCode(factor_id=factor.id, code_digest=d) for d in digests)


def recovery_codes_binding(session: Session, account_id: int) -> str | None:
    """How the account's set of recovery codes is bound, if it has one."""
    return session.scalar(
        select(SecondFactor.binding).where(
            SecondFactor.account_id == account_id, SecondFactor.kind == RECOVERY_CODES
        )
    )


def unused_codes(session: Session, account_id: int) -> int:
    """How many of the account's recovery codes are unused."""
    return (
        session.scalar(
            select(func.count(RecoveryCode.id))
            .join(SecondFactor, RecoveryCode.factor_id == SecondFactor.id)
            .where(SecondFactor.account_id == account_id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def spend_code(session: Session, factor_id: int, digest: bytes, now: datetime) -> bool:
    """Mark the unused code of the set ``factor_id`` with this digest used at ``now``;
    False if there is none (wrong, or used already: also by a concurrent request)."""
    spent = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.factor_id == factor_id,
            RecoveryCode.code_digest == digest,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return spent.rowcount == 1
