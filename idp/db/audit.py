"""The audit trail's store: appending to the hash chain, reading it, erasing personal fields.

Each event links to the one before: its ``hash`` is :func:`link` of the previous hash
and the event's canonical JSON (which idp.audit.events writes; the store only hashes
it). The single ``audit_head`` row holds the last hash and is locked while appending,
so concurrent writers stay in order and an event's id follows the chain.

An append is Core statements, not ORM objects (an event is written on every login):

- PostgreSQL: one statement locks the head, inserts the event with the hash computed
  by the database and moves the head. :func:`appending` adds a request's other writes
  to it as data-modifying CTEs.
- SQLite: two. The insert reads the head and hashes (idp.db.engine.SHA256_SQL) in the
  write transaction, which the process's writer queue and SQLite's write lock give to
  one writer at a time; then the head moves. :func:`append_on` runs them on a DB-API
  connection.
- A database without the head row: the head is created, then locked and read, and the
  hash computed here; the head read under the lock is remembered for the rest of the
  transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from idp.db.engine import SHA256_SQL, Database, Prebuilt
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
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        appended = _APPEND_POSTGRESQL.execute(session, row)
        if appended:
            return appended[0].last_id
    elif dialect == "sqlite":
        inserted = _APPEND_SQLITE.execute(session, row)
        if inserted:
            (event_id, digest) = inserted[0]
            _MOVE_HEAD_TO.execute(session, {"last_id": event_id, "last_hash": digest})
            return event_id
    # no head row yet (a database set up without it), or another database
    prev_hash = _locked_head(session)
    values = {name: row[name] for name in COLUMNS}
    digest = link(prev_hash, row["canonical"])
    (inserted,) = _INSERT_EVENT.execute(session, {**values, "prev_hash": prev_hash, "hash": digest})
    _MOVE_HEAD_TO.execute(session, {"last_id": inserted.id, "last_hash": digest})
    session.info[_HELD] = (_transaction(session), digest)
    return inserted.id


def appending(*statements: Any) -> Any:
    """PostgreSQL: one statement that appends an event and runs ``statements`` (data-modifying
    CTEs) in the same transaction: one round trip for a request's whole write.

    Its parameters are an event's (:func:`append`'s) and those of ``statements``; it
    returns the new event's id, or no row when the head row is missing (then nothing was
    appended, and :func:`append` appends in a unit of work). All its parts run whatever
    that answer: PostgreSQL runs every data-modifying CTE of a statement.
    """
    return _append_postgresql().add_cte(*statements)


def append_on(database: Database, connection: Any, row: Mapping[str, Any]) -> int:
    """SQLite: :func:`append` on a DB-API connection of ``database.dbapi_connection()``, in
    its transaction; the event's id. A database without the head row gets it first."""
    inserted = _APPEND_SQLITE.execute_on(database, connection, row)
    if not inserted:
        _START_HEAD.execute_on(database, connection, {})
        inserted = _APPEND_SQLITE.execute_on(database, connection, row)
    (event_id, digest) = inserted[0]
    _MOVE_HEAD_TO.execute_on(database, connection, {"last_id": event_id, "last_hash": digest})
    return event_id


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


def _append_sqlite() -> Any:
    """SQLite: insert the event with the hash of the head it reads (no row without one)."""
    rows = select(
        *_parameters(),
        _HEAD.c.last_hash,
        getattr(func, SHA256_SQL)(_HEAD.c.last_hash, bindparam("canonical", type_=String())),
    ).where(_HEAD.c.id == 1)
    return (
        insert(_EVENTS)
        .from_select([*COLUMNS, "prev_hash", "hash"], rows)
        .returning(_EVENTS.c.id, _EVENTS.c.hash)
    )


_APPEND_SQLITE = Prebuilt(_append_sqlite())


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
