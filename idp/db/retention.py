"""How long transient rows are kept, as one table of rules, and the deletes that apply it.

Every table whose rows stop mattering after a while has a rule here: flows,
login sessions, authorization codes, grants and refresh tokens, revoked
access-token ids, assertion ids, delivered or abandoned mail and back-channel
logout tokens, and rate-limit counters. Accounts, clients, consents, factors,
verified identities and the audit trail are kept (they are not transient).
:func:`purge` deletes in batches, each in a transaction of its own, so a
backlog never holds SQLite's one writer (or PostgreSQL's row locks) for long.
The domain side (when, how often, one node at a time) is idp/maintenance.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.engine import Database
from idp.db.models import (
    AuthorizationCode,
    BackchannelLogout,
    ClientAssertionJti,
    Flow,
    Grant,
    LoginSession,
    LoginThrottle,
    MailMessage,
    RefreshToken,
    RevokedAccessToken,
)

# Rows deleted per transaction.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Horizons:
    """The times the rules compare with: a row older than its horizon is gone."""

    now: datetime
    codes: datetime  # codes expired before this (kept a while: a late replay finds its grant)
    idle_sessions: datetime  # sessions last seen before this have timed out
    outboxes: datetime  # delivered or abandoned mail and logout tokens created before this
    counters: datetime  # rate-limit counters last counting before this start over anyway


@dataclass(frozen=True, slots=True)
class Rule:
    """Which rows of one table may go."""

    name: str  # as reported by `idp maintenance run`
    table: Table
    expired: Callable[[Horizons], Any]  # a WHERE clause


def _table(model: Any) -> Table:
    return model.__table__


_FLOWS = _table(Flow)
_SESSIONS = _table(LoginSession)
_CODES = _table(AuthorizationCode)
_REFRESH = _table(RefreshToken)
_GRANTS = _table(Grant)
_REVOKED = _table(RevokedAccessToken)
_JTIS = _table(ClientAssertionJti)
_MAIL = _table(MailMessage)
_LOGOUTS = _table(BackchannelLogout)
_COUNTERS = _table(LoginThrottle)

RULES: tuple[Rule, ...] = (
    Rule("flows", _FLOWS, lambda h: _FLOWS.c.expires_at < h.now),
    Rule(
        "login_sessions",
        _SESSIONS,
        lambda h: or_(
            _SESSIONS.c.ended_at.is_not(None),
            _SESSIONS.c.expires_at < h.now,
            _SESSIONS.c.last_seen_at < h.idle_sessions,
        ),
    ),
    Rule("authorization_codes", _CODES, lambda h: _CODES.c.expires_at < h.codes),
    Rule("refresh_tokens", _REFRESH, lambda h: _REFRESH.c.expires_at < h.now),
    # A grant's refresh tokens go with it (ON DELETE CASCADE).
    Rule("grants", _GRANTS, lambda h: _GRANTS.c.expires_at < h.now),
    Rule("revoked_access_tokens", _REVOKED, lambda h: _REVOKED.c.expires_at < h.now),
    Rule("client_assertion_jtis", _JTIS, lambda h: _JTIS.c.expires_at < h.now),
    Rule(
        "mail_outbox",
        _MAIL,
        lambda h: _MAIL.c.status.in_(("sent", "failed")) & (_MAIL.c.created_at < h.outboxes),
    ),
    # Delivered or given up: nothing more to attempt.
    Rule(
        "backchannel_logouts",
        _LOGOUTS,
        lambda h: _LOGOUTS.c.next_attempt_at.is_(None) & (_LOGOUTS.c.created_at < h.outboxes),
    ),
    Rule(
        "rate_limit_counters",
        _COUNTERS,
        lambda h: (
            (_COUNTERS.c.last_failure_at < h.counters)
            & or_(_COUNTERS.c.blocked_until.is_(None), _COUNTERS.c.blocked_until < h.now)
        ),
    ),
)


def _batch(rule: Rule, horizons: Horizons) -> Any:
    """A DELETE of at most :data:`BATCH` rows the rule lets go."""
    keys = list(rule.table.primary_key.columns)
    chosen = select(*keys).where(rule.expired(horizons)).limit(BATCH)
    if len(keys) == 1:
        return delete(rule.table).where(keys[0].in_(chosen))
    return delete(rule.table).where(tuple_(*keys).in_(chosen))


def purge(db: Database, horizons: Horizons) -> dict[str, int]:
    """Delete every row past its horizon, rule by rule; how many rows each rule deleted."""
    purged: dict[str, int] = {}
    for rule in RULES:
        purged[rule.name] = 0
        while True:
            with db.unit_of_work() as uow:
                deleted = uow.execute(_batch(rule, horizons)).rowcount
            purged[rule.name] += deleted
            if deleted < BATCH:
                break
    return purged


# -- whose turn it is --------------------------------------------------------------------------

# The counter row (login_throttles, beside the rate limits) whose ``blocked_until`` says
# until when the last maintenance run holds its turn.
TURN_KEY = "lease:maintenance"


def _turn(dialect: Any) -> Any:
    c = _COUNTERS.c
    now = bindparam("now", type_=c.last_failure_at.type)
    until = bindparam("until", type_=c.blocked_until.type)
    statement = dialect.insert(_COUNTERS).values(
        key=TURN_KEY, failures=0, last_failure_at=now, blocked_until=until
    )
    return statement.on_conflict_do_update(
        index_elements=[c.key],
        set_={"last_failure_at": now, "blocked_until": until},
        where=or_(c.blocked_until.is_(None), c.blocked_until <= now),
    ).returning(c.key)


_TURN = {"postgresql": _turn(postgresql), "sqlite": _turn(sqlite)}


def take_turn(uow: Session, now: datetime, interval: timedelta) -> bool:
    """Whether this caller may run maintenance now: True for one caller per ``interval``
    across every process and node (compare-and-set on the turn's row)."""
    statement = _TURN[uow.get_bind().dialect.name]
    return uow.execute(statement, {"now": now, "until": now + interval}).first() is not None
