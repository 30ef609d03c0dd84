"""Single use of a flow (a ceremony, an enrolment, a reset link): claimed by compare-and-set.

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
