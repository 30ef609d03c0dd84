"""Append-only audit trail whose events form a SHA-256 hash chain.

Each event's hash covers the previous hash and the event's canonical JSON,
so deleting or editing a row breaks the chain, which :func:`verify` finds.
The rows and statements are idp.db.audit's; this module decides what is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from idp import clock
from idp.db import audit as store
from idp.db.engine import Database
from idp.db.models import AuditEvent

GENESIS = store.GENESIS  # the previous hash of the first event
# Session.info key: the events recorded in the open transaction, counted by
# idp.metrics when it commits.
RECORDED = "idp.audit_recorded"
_HASHED = ("at", "event", "actor", "account_id", "client_id", "ip", "data")
# Database.info key: who is told of events committed outside a unit of work.
_LISTENERS = "idp.audit_listeners"


def _canonical(event: AuditEvent | dict[str, Any]) -> str:
    """The event's canonical JSON, which its hash covers after the previous hash."""
    fields = event if isinstance(event, dict) else {k: getattr(event, k) for k in _HASHED}
    body = {**{k: fields[k] for k in _HASHED}, "at": fields["at"].isoformat()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


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
    row = append_parameters(
        event, actor=actor, account_id=account_id, client_id=client_id, ip=ip, data=data
    )
    return store.append(session, row)


def append_parameters(
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One event as the parameters of an append (idp.db.audit), with the canonical text
    its hash covers; what :func:`record` writes."""
    values = {
        "at": clock.now().replace(microsecond=0),
        "event": event,
        "actor": actor,
        "account_id": account_id,
        "client_id": client_id,
        "ip": ip,
        "data": data or {},
    }
    return {**values, "canonical": _canonical(values)}


def listen_outside_units(database: Database, listener: Callable[[list[str]], None]) -> None:
    """Tell ``listener`` the names of the events committed outside a unit of work
    (idp.db.audit's ``appending``, ``append_on``; a unit of work's are in its
    ``info[RECORDED]`` when it commits)."""
    database.info.setdefault(_LISTENERS, []).append(listener)


def committed_outside_units(database: Database, names: list[str]) -> None:
    """These events were committed outside a unit of work: tell the listeners."""
    for listener in database.info.get(_LISTENERS, ()):
        listener(names)


def verify(session: Session) -> int | None:
    """Walk the chain; return the id of the first event that does not fit, or None."""
    prev = GENESIS
    for row in store.chain(session):
        if row.prev_hash != prev or store.link(prev, _canonical(row)) != row.hash:
            return row.id
        prev = row.hash
    head = store.head(session)
    if head is not None and head.last_hash != prev:
        return head.last_id
    return None
