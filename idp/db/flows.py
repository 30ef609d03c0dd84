"""Flows: the state of an interaction in progress (an authorization waiting for a login,
a step-up or a consent, a ceremony, an enrolment, a reset link), with an id, an expiry
and where it continues.

:func:`live` is the one test of whether a flow may still be used: of the kind asked
for, the account's if one is named, not completed and not expired. Reading a flow and
setting ``completed_at`` afterwards would let two concurrent requests both find it open
(SQLite ignores ``SELECT ... FOR UPDATE``): :func:`claim` completes it with one
conditional UPDATE, so exactly one request can.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from idp import clock
from idp.db.engine import Prebuilt
from idp.db.models import Flow

# GET /authorize opens a flow for nearly every citizen: one prebuilt insert, not an ORM
# object added and flushed.
_START = Prebuilt(insert(Flow.__table__))


def start(
    uow: Session,
    flow_id: str,
    *,
    kind: str,
    state: dict[str, Any],
    return_to: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Record a new, open flow of no account yet."""
    _START.execute(
        uow,
        {
            "id": flow_id,
            "kind": kind,
            "state": state,
            "account_id": None,
            "return_to": return_to,
            "created_at": now,
            "expires_at": expires_at,
            "completed_at": None,
        },
    )


def live(
    session: Session,
    flow: Flow | None,
    kind: str,
    *,
    account_id: int | None = None,
    owned: bool = False,
) -> Flow | None:
    """``flow`` if it is a live flow of ``kind`` (and, with ``account_id``, that account's;
    with ``owned``, one that belongs to some account), else None."""
    if flow is None or flow.kind != kind or flow.completed_at is not None:
        return None
    if account_id is not None and flow.account_id != account_id:
        return None
    if owned and flow.account_id is None:
        return None
    return flow if clock.now(session) < flow.expires_at else None


def claim(session: Session, flow: Flow) -> bool:
    """Complete the live ``flow`` now; False if another request completed it first (or it
    expired meanwhile)."""
    now = clock.now(session)
    result = session.execute(
        update(Flow.__table__)
        .where(
            Flow.__table__.c.id == flow.id,
            Flow.__table__.c.completed_at.is_(None),
            Flow.__table__.c.expires_at > now,
        )
        .values(completed_at=now)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(flow, "completed_at", now)
    return True
