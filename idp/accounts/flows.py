"""Flows (a ceremony, an enrolment, a reset link, an authorization): liveness and single use.

:func:`live` is the one test of whether a flow may still be used: of the kind
asked for, the account's if one is named, not completed and not expired.
Reading a flow and setting ``completed_at`` afterwards lets two concurrent requests
both find it open (SQLite ignores ``SELECT ... FOR UPDATE``). :func:`claim` completes
it with one conditional UPDATE, so exactly one request can.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from idp import clock
from idp.db.models import Flow

_FLOWS = Flow.__table__


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
        update(_FLOWS)
        .where(
            _FLOWS.c.id == flow.id,
            _FLOWS.c.completed_at.is_(None),
            _FLOWS.c.expires_at > now,
        )
        .values(completed_at=now)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(flow, "completed_at", now)
    return True
