"""Windowed use counters: at most ``limit`` uses of a key per window, by compare-and-set.

A counter is a row of ``login_throttles`` (its ``key`` names what is counted, e.g.
``mail:...`` or ``verify-day:...``): ``failures`` counts the uses of the current window
and ``blocked_until`` is when that window ends. A window opens at the first use after
the previous one ended, so it is anchored at a use that was let through, never pushed
on by refused ones. Taking a use is one conditional UPDATE whose row count says
whether it was allowed, so concurrent requests (other workers, other nodes) can never
take more than ``limit`` between them; SQLite's ignored ``FOR UPDATE`` plays no part.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.db.models import LoginThrottle


def take(session: Session, key: str, *, limit: int, window: timedelta) -> bool:
    """Count one use of ``key`` if its window has had fewer than ``limit``; False if not."""
    now = clock.now(session)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # A new counter starts with its window already over, so the update below opens one.
    session.execute(
        dialect.insert(LoginThrottle)
        .values(key=key, failures=0, last_failure_at=now, blocked_until=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    over = LoginThrottle.blocked_until <= now
    taken = session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, over | (LoginThrottle.failures < limit))
        .values(
            failures=case((over, 1), else_=LoginThrottle.failures + 1),
            blocked_until=case(
                (over, literal(now + window, LoginThrottle.blocked_until.type)),
                else_=LoginThrottle.blocked_until,
            ),
            last_failure_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return taken.rowcount == 1


def wait(session: Session, key: str) -> int:
    """Seconds until ``key``'s current window ends (0 if none is open)."""
    ends = session.scalar(select(LoginThrottle.blocked_until).where(LoginThrottle.key == key))
    left = (ends - clock.now(session)).total_seconds() if ends is not None else 0
    return max(0, math.ceil(left))


def forget(session: Session, key: str) -> None:
    """Drop ``key``'s counter: its next use opens a new window."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
