"""Windowed use counters: at most ``limit`` uses of a key per window, by compare-and-set.

A counter is a row of ``login_throttles`` (its ``key`` names what is counted, e.g.
``mail:...`` or ``verify-day:...``): ``failures`` counts the uses of the current window
and ``blocked_until`` is when that window ends. A window opens at the first use after
the previous one ended, so it is anchored at a use that was let through, never pushed
on by refused ones. Taking a use is one conditional upsert (``INSERT ... ON CONFLICT DO
UPDATE ... WHERE``, prebuilt: it runs inside the write transactions of registrations and
sign-ins) whose returned row says whether it was allowed, so concurrent requests (other
workers, other nodes) can never take more than ``limit`` between them; SQLite's ignored
``FOR UPDATE`` plays no part.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.db.engine import Prebuilt
from idp.db.models import LoginThrottle

_COUNTERS = LoginThrottle.__table__
_C = _COUNTERS.c


def _taking(dialect: Any) -> Any:
    """Count one use of ``key``: a new counter opens its window with this use; a counter
    whose window is over opens a new one; else one more use, if fewer than ``limit`` were
    counted. The key is returned if the use was counted, nothing if not."""
    inserted = dialect.insert(_COUNTERS).values(
        key=bindparam("key"),
        failures=1,
        last_failure_at=bindparam("now", type_=_C.last_failure_at.type),
        blocked_until=bindparam("window_ends", type_=_C.blocked_until.type),
    )
    over = _C.blocked_until <= inserted.excluded.last_failure_at
    return inserted.on_conflict_do_update(
        index_elements=[_C.key],
        set_={
            "failures": case((over, 1), else_=_C.failures + 1),
            "blocked_until": case((over, inserted.excluded.blocked_until), else_=_C.blocked_until),
            "last_failure_at": inserted.excluded.last_failure_at,
        },
        where=or_(over, _C.failures < bindparam("limit")),
    ).returning(_C.key)


_TAKE = {"postgresql": Prebuilt(_taking(postgresql)), "sqlite": Prebuilt(_taking(sqlite))}


def take(session: Session, key: str, *, limit: int, window: timedelta) -> bool:
    """Count one use of ``key`` if its window has had fewer than ``limit``; False if not."""
    now = clock.now(session)
    taken = _TAKE[session.get_bind().dialect.name].execute(
        session, {"key": key, "now": now, "window_ends": now + window, "limit": limit}
    )
    return bool(taken)


def wait(session: Session, key: str) -> int:
    """Seconds until ``key``'s current window ends (0 if none is open)."""
    ends = session.scalar(select(LoginThrottle.blocked_until).where(LoginThrottle.key == key))
    left = (ends - clock.now(session)).total_seconds() if ends is not None else 0
    return max(0, math.ceil(left))


def forget(session: Session, key: str) -> None:
    """Drop ``key``'s counter: its next use opens a new window."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
