"""The audit trail's store: appending to the hash chain, reading it, erasing personal fields.

Each event links to the one before: its ``hash`` is :func:`link` of the previous hash
and the event's canonical JSON (which idp.audit.events writes; the store only hashes
it). The single ``audit_head`` row holds the last hash and is locked while appending,
so concurrent writers stay in order and an event's id follows the chain.

An append is Core statements, not ORM objects, in the caller's unit of work: the head
locked and read, the event inserted with its hash, the head moved. On PostgreSQL one
statement does all three (the database computes the hash from the head it has just
locked): one round trip instead of three.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from idp.db.engine import Prebuilt
from idp.db.models import AuditEvent, AuditHead

GENESIS = b"\x00" * 32
_EVENTS = AuditEvent.__table__
_HEAD = AuditHead.__table__
# What an append writes besides the two hashes, each given as a parameter of that name
# (with ``canonical``, the text the hash covers after the previous hash).
COLUMNS = (
    *("at", "event", "actor", "client_id", "data", "seal"),
    *("account_id", "ip", "personal", "seal_key"),
)
# Personal fields an erasure clears; the chain covers none of them (idp.audit.events).
_PERSONAL = ("account_id", "ip", "personal", "seal_key")
# PostgreSQL locks the row; SQLite has no row locks, and a plain SELECT there runs before
# the write transaction begins (it may read a head another writer is about to move): a
# no-op UPDATE takes the database's write lock and reads the head under it.
_LOCK_HEAD = Prebuilt(select(_HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update())
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)
_LOCK_HEAD_SQLITE = Prebuilt(
    _MOVE_HEAD.values(last_id=_HEAD.c.last_id).returning(_HEAD.c.last_hash)
)
_INSERT_EVENT = Prebuilt(insert(_EVENTS).returning(_EVENTS.c.id))
_MOVE_HEAD_TO = Prebuilt(_MOVE_HEAD)
_START_HEAD = Prebuilt(insert(_HEAD).values(id=1, last_id=0, last_hash=GENESIS))
_HELD = "idp.audit_head"  # Session.info: (transaction, last hash) while the lock is held


def link(prev_hash: bytes, canonical: str) -> bytes:
    """An event's hash: SHA-256 of the previous hash and the event's canonical text, as the
    append statements compute it in the database."""
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


def append(session: Session, row: Mapping[str, Any]) -> int:
    """Append one event (:data:`COLUMNS` and ``canonical``) in the unit of work; its id."""
    if session.get_bind().dialect.name == "postgresql":
        appended = _APPEND_POSTGRESQL.execute(session, row)
        if appended:
            return appended[0].last_id
    # SQLite, or no head row yet (a database set up without it)
    prev_hash = _locked_head(session)
    values = {name: row[name] for name in COLUMNS}
    digest = link(prev_hash, row["canonical"])
    (inserted,) = _INSERT_EVENT.execute(session, {**values, "prev_hash": prev_hash, "hash": digest})
    _MOVE_HEAD_TO.execute(session, {"last_id": inserted.id, "last_hash": digest})
    session.info[_HELD] = (_transaction(session), digest)
    return inserted.id


def chain(session: Session) -> Iterator[AuditEvent]:
    """Every event in the chain's order, read a thousand at a time."""
    return iter(session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000))


def head(session: Session) -> AuditHead | None:
    """The head row (the last event's id and hash), or None on a database without it."""
    return session.get(AuditHead, 1)


def clear_personal_fields(session: Session, account_id: int) -> int:
    """Clear the personal fields (account, address, personal details and the key of their
    seal) of every event of ``account_id`` that still has them; how many events."""
    cleared = session.execute(
        update(_EVENTS)
        .where(_EVENTS.c.account_id == account_id, _EVENTS.c.seal_key.is_not(None))
        .values(dict.fromkeys(_PERSONAL))
        .execution_options(synchronize_session=False)
    )
    return cleared.rowcount


def _parameters() -> list[Any]:
    return [bindparam(name, type_=_EVENTS.c[name].type) for name in COLUMNS]


def _append_postgresql() -> Any:
    """PostgreSQL: lock the head, insert the event and move the head in one statement.

    The database computes the hash (``sha256(previous hash || canonical)``, as
    :func:`link` does) from the head it has just locked. No row comes back when the head
    row is missing.
    """
    head = select(_HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update().cte("head")
    canonical = func.convert_to(bindparam("canonical", type_=String()), "UTF8")
    rows = select(
        *_parameters(), head.c.last_hash, func.sha256(head.c.last_hash.op("||")(canonical))
    )
    appended = (
        insert(_EVENTS)
        .from_select([*COLUMNS, "prev_hash", "hash"], rows)
        .returning(_EVENTS.c.id, _EVENTS.c.hash)
        .cte("appended")
    )
    return (
        update(_HEAD)
        .where(_HEAD.c.id == 1)
        .values(
            last_id=select(appended.c.id).scalar_subquery(),
            last_hash=select(appended.c.hash).scalar_subquery(),
        )
        .returning(_HEAD.c.last_id)
    )


_APPEND_POSTGRESQL = Prebuilt(_append_postgresql())


def _transaction(session: Session) -> SessionTransaction | None:
    """The innermost transaction: a savepoint rolled back must not leave a stale head."""
    return session.get_nested_transaction() or session.get_transaction()


def _locked_head(session: Session) -> bytes:
    """The chain's last hash, its row locked until the transaction ends.

    Read once per transaction: after this transaction's own append the head is
    what it wrote, and no one else can move it while the lock is held.
    """
    held = session.info.get(_HELD)
    if held is not None and held[0] is _transaction(session) and held[0] is not None:
        return held[1]
    sqlite = session.get_bind().dialect.name == "sqlite"
    locked = (_LOCK_HEAD_SQLITE if sqlite else _LOCK_HEAD).execute(session, {})
    last_hash = locked[0].last_hash if locked else None
    if last_hash is None:  # a database set up without the head row
        _START_HEAD.execute(session, {})
        last_hash = GENESIS
    return last_hash
