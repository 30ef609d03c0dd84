"""Append-only audit trail whose events form a SHA-256 hash chain.

Each event's hash covers the previous hash and the event's canonical JSON,
so deleting or editing a row breaks the chain, which :func:`verify` finds.
Appending locks the chain's head row, so concurrent writers stay ordered.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import clock
from idp.db.models import AuditEvent, AuditHead

GENESIS = b"\x00" * 32
# Session.info key: the events recorded in the open transaction, counted by
# idp.metrics when it commits.
RECORDED = "idp.audit_recorded"


def _digest(prev_hash: bytes, event: AuditEvent) -> bytes:
    body = {
        "at": event.at.isoformat(),
        "event": event.event,
        "actor": event.actor,
        "account_id": event.account_id,
        "client_id": event.client_id,
        "ip": event.ip,
        "data": event.data,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


def record(
    session: Session,
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction."""
    session.info.setdefault(RECORDED, []).append(event)
    head = session.get(AuditHead, 1, with_for_update=True)
    if head is None:
        head = AuditHead(id=1, last_id=0, last_hash=GENESIS)
        session.add(head)
    row = AuditEvent(
        at=clock.now().replace(microsecond=0),
        event=event,
        actor=actor,
        account_id=account_id,
        client_id=client_id,
        ip=ip,
        data=data or {},
        prev_hash=head.last_hash,
    )
    row.hash = _digest(head.last_hash, row)
    session.add(row)
    session.flush()
    head.last_id = row.id
    head.last_hash = row.hash
    return row


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
