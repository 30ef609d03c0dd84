"""The login throttle's store: counters of attempts per login identifier and per client
address, in ``login_throttles``, counted and released by compare-and-set.

The rules (how long a position must wait, when a lockout starts, what a success
releases) are idp.accounts.throttle's; this module runs the statements. Reserving
is one transaction on a pooled DB-API connection, before any unit of work: each
counter's upsert takes its row until the wait it may set is written, so concurrent
attempts each get their own position. The account lookup of a password login reads
its counters in the same statement (a round trip less on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.db.counters import forget
from idp.db.engine import Database, Prebuilt, read_row_awaited
from idp.db.models import Account, LoginThrottle

__all__ = [
    "CounterBlocked",
    "LoginLookup",
    "blocked_now",
    "clear_unless_locked",
    "count_attempts",
    "forget",
    "login_lookup",
    "take_back_one",
]

_ACCOUNTS = Account.__table__
_THROTTLES = LoginThrottle.__table__
_C = _THROTTLES.c
_EMAIL_COUNTER = _THROTTLES.alias("email_counter")
_IP_COUNTER = _THROTTLES.alias("ip_counter")
_ONE = select(literal(1).label("one")).subquery("one")

_LOOKUP = Prebuilt(
    select(
        _ACCOUNTS.c.id,
        _ACCOUNTS.c.password_hash,
        _ACCOUNTS.c.disabled_at,
        _EMAIL_COUNTER.c.key.label("email_key"),
        _EMAIL_COUNTER.c.blocked_until.label("email_blocked_until"),
        _IP_COUNTER.c.key.label("ip_key"),
        _IP_COUNTER.c.blocked_until.label("ip_blocked_until"),
    ).select_from(
        _ONE.outerjoin(
            _ACCOUNTS,
            and_(_ACCOUNTS.c.email == bindparam("email"), _ACCOUNTS.c.kind == bindparam("kind")),
        )
        .outerjoin(_EMAIL_COUNTER, _EMAIL_COUNTER.c.key == bindparam("email_key"))
        .outerjoin(_IP_COUNTER, _IP_COUNTER.c.key == bindparam("ip_key"))
    )
)


class LoginLookup(NamedTuple):
    """What a password login reads before it reserves: the account of that email and kind
    (its fields None if there is none) and its two counters' keys (None: no counter yet)
    with their blocks."""

    account_id: int | None
    password_hash: str | None
    disabled_at: datetime | None
    email_counter: str | None
    email_blocked_until: datetime | None
    ip_counter: str | None
    ip_blocked_until: datetime | None


async def login_lookup(
    database: Database, *, email: str, kind: str, email_key: str, ip_key: str | None
) -> LoginLookup:
    """The account with ``email`` of ``kind`` and the attempt's counters, in one read outside
    any transaction (awaited on PostgreSQL, at once on SQLite)."""
    found = await read_row_awaited(
        database, _LOOKUP, {"email": email, "kind": kind, "email_key": email_key, "ip_key": ip_key}
    )
    assert found is not None  # the outer joins always give one row
    return LoginLookup(*found)


def _counting(dialect: Any) -> Any:
    """Count one attempt for ``counter`` unless it is blocked now; its position (no row:
    blocked). A counter whose last attempt is older than ``forget_before`` starts over."""
    inserted = dialect.insert(_THROTTLES).values(
        key=bindparam("counter"),
        failures=1,
        last_failure_at=bindparam("now", type_=_C.last_failure_at.type),
        blocked_until=None,
    )
    return inserted.on_conflict_do_update(
        index_elements=[_C.key],
        set_={
            "failures": case(
                (_C.last_failure_at < bindparam("forget_before", type_=_C.last_failure_at.type), 1),
                else_=_C.failures + 1,
            ),
            "last_failure_at": inserted.excluded.last_failure_at,
        },
        where=or_(
            _C.blocked_until.is_(None), _C.blocked_until <= inserted.excluded.last_failure_at
        ),
    ).returning(_C.failures)


_COUNT = {"postgresql": Prebuilt(_counting(postgresql)), "sqlite": Prebuilt(_counting(sqlite))}
# A wait set by an attempt: only ever made longer, whatever order concurrent attempts
# write in.
_BLOCK = Prebuilt(
    update(_THROTTLES)
    .where(
        _C.key == bindparam("counter"),
        or_(_C.blocked_until.is_(None), _C.blocked_until < bindparam("wait_until")),
    )
    .values(blocked_until=bindparam("wait_until", type_=_C.blocked_until.type))
)
_BLOCKED_UNTIL = Prebuilt(select(_C.blocked_until).where(_C.key == bindparam("counter")))
_CLEAR = Prebuilt(
    delete(_THROTTLES)
    .where(
        _C.key == bindparam("counter"),
        or_(_C.failures < bindparam("lockout"), _C.failures == bindparam("position")),
    )
    .returning(_C.key)
)
_STILL_BLOCKED = Prebuilt(
    select(_C.key).where(
        _C.key == bindparam("counter"),
        _C.blocked_until > bindparam("now", type_=_C.blocked_until.type),
    )
)
_TAKE_BACK = Prebuilt(
    update(_THROTTLES)
    .where(and_(_C.key == bindparam("counter"), _C.failures > 0))
    .values(failures=_C.failures - 1)
    .returning(_C.key)
)


class CounterBlocked(Exception):
    """A counter was blocked when an attempt was to be counted on it: ``until`` (None if
    its row is gone meanwhile)."""

    def __init__(self, until: datetime | None) -> None:
        super().__init__(f"blocked until {until}")
        self.until = until


def count_attempts(
    database: Database,
    counters: Sequence[tuple[str, Callable[[int], timedelta | None]]],
    *,
    now: datetime,
    forget_before: datetime,
) -> list[int]:
    """Count one attempt on each counter, in order, in one transaction; each one's position.

    ``counters`` pairs each key with the wait its new position imposes (None: none),
    written before the next counter is counted. Raises :class:`CounterBlocked` at the
    first counter that is blocked now; what was counted before it stays counted (the
    block is an answer, not an error to roll back).
    """
    counting = _COUNT[database.dialect]
    positions = []
    with database.dbapi_connection() as connection:
        for key, wait_for in counters:
            parameters = {"counter": key, "now": now, "forget_before": forget_before}
            rows = counting.execute_on(database, connection, parameters)
            if not rows:
                found = _BLOCKED_UNTIL.execute_on(database, connection, {"counter": key})
                blocked = CounterBlocked(found[0][0] if found else None)
                connection.commit()
                raise blocked
            position = rows[0][0]
            wait = wait_for(position)
            if wait is not None:
                _BLOCK.execute_on(database, connection, {"counter": key, "wait_until": now + wait})
            positions.append(position)
    return positions


def clear_unless_locked(session: Session, key: str, *, lockout: int, position: int) -> bool:
    """Drop the counter ``key`` after a success at ``position``, unless attempts after it
    have reached ``lockout`` meanwhile; whether a counter was dropped."""
    return bool(_CLEAR.execute(session, {"counter": key, "lockout": lockout, "position": position}))


def blocked_now(session: Session, key: str, now: datetime) -> bool:
    """Whether the counter ``key`` is blocked at ``now``."""
    return bool(_STILL_BLOCKED.execute(session, {"counter": key, "now": now}))


def take_back_one(session: Session, key: str) -> None:
    """Count one attempt fewer on ``key`` (a success from a shared address)."""
    _TAKE_BACK.execute(session, {"counter": key})
