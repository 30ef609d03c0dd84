"""Maintenance: deleting what has expired, by `idp maintenance run` and by the server.

Every table of transient rows has a rule in idp/db/retention.py; this module
says how far back each reaches (from the settings and the lifetimes of the
parts that own the rows) and when it runs. The server asks every minute (or
every ``IDP_MAINTENANCE_INTERVAL_SECONDS`` if shorter) in each worker whether a
run is due; one worker of one node at a time gets the turn, for the interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from idp import clock
from idp.accounts.throttle import FORGET_AFTER
from idp.db import retention
from idp.db.engine import Database
from idp.settings import Settings

# Codes stay a day past expiry: a late replay still finds its grant and revokes it.
CODES_KEPT = timedelta(days=1)
# How often a server's worker asks whether a run is due (at most).
POLL_SECONDS = 60


def horizons(settings: Settings, now: datetime) -> retention.Horizons:
    """What is old enough to go at ``now``."""
    return retention.Horizons(
        now=now,
        codes=now - CODES_KEPT,
        idle_sessions=now - timedelta(minutes=settings.session_idle_minutes),
        outboxes=now - timedelta(days=settings.outbox_retention_days),
        counters=now - FORGET_AFTER,
    )


def run(db: Database, settings: Settings) -> dict[str, int]:
    """Delete every expired row now; how many rows of each kind went."""
    return retention.purge(db, horizons(settings, clock.now(db)))


def run_if_due(db: Database, settings: Settings) -> dict[str, int] | None:
    """:func:`run` if no other process or node has run it in the last interval; None if
    it was not this caller's turn."""
    interval = timedelta(seconds=settings.maintenance_interval_seconds)
    with db.unit_of_work() as uow:
        if not retention.take_turn(uow, clock.now(db), interval):
            return None
    return run(db, settings)


def poll_seconds(settings: Settings) -> int:
    """How long a server's worker waits between asking :func:`run_if_due`."""
    return min(POLL_SECONDS, settings.maintenance_interval_seconds)
