"""Append-only audit trail whose events form a SHA-256 hash chain.

Each event's hash covers the previous hash and the event's canonical JSON,
so deleting or editing a row breaks the chain, which :func:`verify` finds.
Appending locks the chain's head row, so concurrent writers stay ordered.

Appending is Core statements, not ORM objects: an event is written on every
login, and the unit of work's flush machinery cost more than the statements
themselves. On PostgreSQL one statement locks the head, inserts the event with
the hash computed by the database and moves the head (one round trip, not
three). On SQLite two: the insert reads the head and hashes (a function of the
connection's, idp.db.engine.SHA256_SQL) in the write transaction, which the
process's writer queue and SQLite's write lock give to one writer at a time; then
the head moves. Elsewhere three statements do it (lock and read the head, insert
the event, move the head), and the head read under the lock is remembered for the
rest of the transaction, so a request that records several events (consent,
then the code) reads it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from idp import clock
from idp.db.engine import SHA256_SQL, Database, Prebuilt
from idp.db.models import AuditEvent, AuditHead

GENESIS = b"\x00" * 32
# Session.info key: the events recorded in the open transaction, counted by
# idp.metrics when it commits.
RECORDED = "idp.audit_recorded"
_EVENTS = AuditEvent.__table__
_HEAD = AuditHead.__table__
# PostgreSQL locks the row; SQLite has no row locks, and a plain SELECT there runs before
# the write transaction begins (it may read a head another writer is about to move): a
# no-op UPDATE takes the database's write lock and reads the head under it.
# Built once, run on the cursor (idp.db.engine.Prebuilt); each append passes its values as
# parameters: building and executing them through SQLAlchemy per event cost more than the
# database spends running them.
_LOCK_HEAD = Prebuilt(select(_HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update())
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)
_LOCK_HEAD_SQLITE = Prebuilt(
    _MOVE_HEAD.values(last_id=_HEAD.c.last_id).returning(_HEAD.c.last_hash)
)
_INSERT_EVENT = Prebuilt(insert(_EVENTS).returning(_EVENTS.c.id))
_MOVE_HEAD_TO = Prebuilt(_MOVE_HEAD)
_START_HEAD = Prebuilt(insert(_HEAD).values(id=1, last_id=0, last_hash=GENESIS))
_HASHED = ("at", "event", "actor", "account_id", "client_id", "ip", "data")
_HELD = "idp.audit_head"  # Session.info: (transaction, last hash) while the lock is held
# Database.info key: who is told of events committed outside a unit of work.
_LISTENERS = "idp.audit_listeners"


def _canonical(event: AuditEvent | dict[str, Any]) -> str:
    """The event's canonical JSON, which its hash covers after the previous hash."""
    fields = event if isinstance(event, dict) else {k: getattr(event, k) for k in _HASHED}
    body = {**fields, "at": fields["at"].isoformat()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def _digest(prev_hash: bytes, event: AuditEvent | dict[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + _canonical(event).encode()).digest()


def record(
    session: Session,
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append one event in the caller's transaction; return its id."""
    session.info.setdefault(RECORDED, []).append(event)
    values = _values(clock.now(session), event, actor, account_id, client_id, ip, data)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        appended = _APPEND_POSTGRESQL.execute(session, {**values, "canonical": _canonical(values)})
        if appended:
            return appended[0].last_id
    elif dialect == "sqlite":
        inserted = _APPEND_SQLITE.execute(session, {**values, "canonical": _canonical(values)})
        if inserted:
            (event_id, digest) = inserted[0]
            _MOVE_HEAD_TO.execute(session, {"last_id": event_id, "last_hash": digest})
            return event_id
    # no head row yet (a database set up without it), or another database
    prev_hash = _locked_head(session)
    digest = _digest(prev_hash, values)
    (inserted,) = _INSERT_EVENT.execute(session, {**values, "prev_hash": prev_hash, "hash": digest})
    _MOVE_HEAD_TO.execute(session, {"last_id": inserted.id, "last_hash": digest})
    session.info[_HELD] = (_transaction(session), digest)
    return inserted.id


def _values(
    now: datetime,
    event: str,
    actor: str | None,
    account_id: int | None,
    client_id: str | None,
    ip: str | None,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "at": now.replace(microsecond=0),
        "event": event,
        "actor": actor,
        "account_id": account_id,
        "client_id": client_id,
        "ip": ip,
        "data": data or {},
    }


def appending(*statements: Any) -> Any:
    """PostgreSQL: one statement that appends an event and runs ``statements`` (data-modifying
    CTEs) in the same transaction: one round trip for a request's whole write.

    Its parameters are :func:`append_parameters` and those of ``statements``; it returns
    the new event's id, or no row when the head row is missing (then nothing was
    appended, and :func:`record` appends in a unit of work). All its parts run whatever
    that answer: PostgreSQL runs every data-modifying CTE of a statement.
    """
    return _append_postgresql().add_cte(*statements)


def append_parameters(
    database: Database,
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters of an :func:`appending` statement for one event, at the time of
    ``database``'s clock."""
    values = _values(clock.now(database), event, actor, account_id, client_id, ip, data)
    return {**values, "canonical": _canonical(values)}


def append_on(database: Database, connection: Any, parameters: dict[str, Any]) -> int:
    """SQLite: append an event (:func:`append_parameters`) on a DB-API connection of
    ``database.dbapi_connection()``, in its transaction, as :func:`record` does in a unit of
    work; its id. A database without the head row gets it first (the chain's genesis)."""
    inserted = _APPEND_SQLITE.execute_on(database, connection, parameters)
    if not inserted:
        _START_HEAD.execute_on(database, connection, {})
        inserted = _APPEND_SQLITE.execute_on(database, connection, parameters)
    (event_id, digest) = inserted[0]
    _MOVE_HEAD_TO.execute_on(database, connection, {"last_id": event_id, "last_hash": digest})
    return event_id


def listen_outside_units(database: Database, listener: Callable[[list[str]], None]) -> None:
    """Tell ``listener`` the names of the events committed outside a unit of work
    (:func:`appending`, :func:`append_on`; a unit of work's are in its ``info[RECORDED]``
    when it commits)."""
    database.info.setdefault(_LISTENERS, []).append(listener)


def committed_outside_units(database: Database, names: list[str]) -> None:
    """These events were committed outside a unit of work: tell the listeners."""
    for listener in database.info.get(_LISTENERS, ()):
        listener(names)


def _append_postgresql() -> Any:
    """PostgreSQL: lock the head, insert the event and move the head in one statement.

    The same chain in one round trip instead of three: PostgreSQL computes the hash
    (``sha256(previous hash || canonical JSON)``, as :func:`_digest` does) from the head
    it has just locked. No row comes back when the head row is missing.
    """
    head = select(_HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update().cte("head")
    canonical = func.convert_to(bindparam("canonical", type_=String()), "UTF8")
    rows = select(
        *(bindparam(name, type_=_EVENTS.c[name].type) for name in _HASHED),
        head.c.last_hash,
        func.sha256(head.c.last_hash.op("||")(canonical)),
    )
    appended = (
        insert(_EVENTS)
        .from_select([*_HASHED, "prev_hash", "hash"], rows)
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
        *(bindparam(name, type_=_EVENTS.c[name].type) for name in _HASHED),
        _HEAD.c.last_hash,
        getattr(func, SHA256_SQL)(_HEAD.c.last_hash, bindparam("canonical", type_=String())),
    ).where(_HEAD.c.id == 1)
    return (
        insert(_EVENTS)
        .from_select([*_HASHED, "prev_hash", "hash"], rows)
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


def verify(session: Session) -> int | None:
    """Walk the chain; return the id of the first event that does not fit, or None."""
    prev = GENESIS
    for row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
        if row.prev_hash != prev or _digest(prev, row) != row.hash:
            return row.id
        prev = row.hash
    head = session.get(AuditHead, 1)
    if head is not None and head.last_hash != prev:
        return head.last_id
    return None
