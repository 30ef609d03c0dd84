"""Rate limits shared by every process and node: a counter per key and fixed window.

The counters live in the ``login_throttles`` table beside the login counters
(idp/accounts/throttle.py), under keys of their own prefix: ``failures``
counts the admissions of the current window, ``last_failure_at`` is when the
window began. One statement counts and answers (an upsert with RETURNING), so
concurrent requests cannot both take the last place on either database.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import clock
from idp.db.engine import Prebuilt
from idp.db.models import LoginThrottle

_COUNTERS = LoginThrottle.__table__


def _counting(dialect: object) -> Prebuilt:
    """Count one admission of ``key``: a new window if the last began before
    ``window_start``; the window's count and start after it."""
    c = _COUNTERS.c
    when = bindparam("now", type_=c.last_failure_at.type)
    stale = c.last_failure_at <= bindparam("window_start", type_=c.last_failure_at.type)
    statement = dialect.insert(_COUNTERS).values(  # type: ignore[attr-defined]
        key=bindparam("key", type_=c.key.type), failures=1, last_failure_at=when, blocked_until=None
    )
    statement = statement.on_conflict_do_update(
        index_elements=[c.key],
        set_={
            "failures": case((stale, 1), else_=c.failures + 1),
            "last_failure_at": case((stale, when), else_=c.last_failure_at),
        },
    ).returning(c.failures, c.last_failure_at)
    return Prebuilt(statement)


_COUNT = {"postgresql": _counting(postgresql), "sqlite": _counting(sqlite)}


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a request was admitted; if not, how many seconds until it may be."""

    admitted: bool
    retry_after: int


def admit(uow: Session, key: str, limit: int, window: timedelta) -> Admission:
    """Count one request for ``key``; refuse it beyond ``limit`` in the current ``window``.

    Runs in the request's transaction; a refused request counts too (its window still
    ends when it began plus ``window``).
    """
    now = clock.now()
    statement = _COUNT[uow.get_bind().dialect.name]
    rows = statement.execute(uow, {"key": key, "now": now, "window_start": now - window})
    count, started = rows[0]
    if count <= limit:
        return Admission(True, 0)
    return Admission(False, max(1, math.ceil((started + window - now).total_seconds())))


# The counter of the flows a client address opens (authorization, registration, password
# reset), and its window: one rule for every kind of flow a stranger can open.
FLOWS_PREFIX = "flows:ip:"
FLOW_WINDOW = timedelta(minutes=1)


def admit_flow(uow: Session, ip: str | None, per_minute: int) -> Admission:
    """Count one flow opened from ``ip``; refused beyond ``per_minute`` (no address: admitted)."""
    if ip is None:
        return Admission(True, 0)
    return admit(uow, client_key(FLOWS_PREFIX, ip), per_minute, FLOW_WINDOW)


def client_key(prefix: str, ip: str) -> str:
    """The counter key of a client address: IPv6 by its /64 network (one subscriber's
    usual share), IPv4 and anything else as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{prefix}{ip}"[:96]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"{prefix}{address.ipv4_mapped}"
        return f"{prefix}{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"{prefix}{address}"
