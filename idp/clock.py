"""The service's clock: UTC, injected where the service is built, so tests can freeze time.

A :class:`~idp.db.engine.Database` is built with a clock (the system's unless told
otherwise) and hands it to every unit of work it opens, in the session's ``info``.
Code that has a session or the database at hand asks it with :func:`now`; objects built
around a database (the key store, the OIDC provider) take the database's clock. Nothing
here is global: two services in one process can run on different clocks.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# Where a database and each of its sessions keep their clock (SQLAlchemy's ``info`` dicts).
KEY = "idp.clock"


class Carrier(Protocol):
    """What carries a clock in its ``info``: a database, or a session one opened."""

    info: dict[str, Any]


class Clock(Protocol):
    """Tells the time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until it is moved (tests): every ``now()`` is the same
    moment until :meth:`advance` or :meth:`set`."""

    def __init__(self, at: datetime) -> None:
        self._lock = threading.Lock()
        self._at = _utc(at)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        """Move the clock on by ``delta``."""
        with self._lock:
            self._at += delta

    def set(self, at: datetime) -> None:
        """Stop the clock at ``at`` (timezone-aware)."""
        with self._lock:
            self._at = _utc(at)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a clock needs a timezone-aware time")
    return at.astimezone(UTC)


SYSTEM = SystemClock()


def of(carrier: Carrier) -> Clock:
    """The clock of a database, or of the database that opened a session."""
    return carrier.info[KEY]


def now(carrier: Carrier) -> datetime:
    """The current time on the clock of ``carrier`` (a database or one of its sessions)."""
    return carrier.info[KEY].now()
