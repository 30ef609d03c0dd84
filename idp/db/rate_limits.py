"""Rate limits shared by every process and node: how many flows a client address opens.

The counting is :mod:`idp.db.counters` (windowed counters in ``login_throttles``,
taken by compare-and-set, so concurrent requests cannot both take the last place on
either database); this module says what is counted and how an address is keyed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from idp.db import counters


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a request was admitted; if not, how many seconds until it may be."""

    admitted: bool
    retry_after: int


def admit(uow: Session, key: str, limit: int, window: timedelta) -> Admission:
    """Count one request for ``key``; refuse it beyond ``limit`` in the current ``window``
    (idp.db.counters: a compare-and-set in the request's transaction)."""
    if counters.take(uow, key, limit=limit, window=window):
        return Admission(True, 0)
    return Admission(False, max(1, counters.wait(uow, key)))


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
