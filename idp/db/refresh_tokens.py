"""Refresh tokens and their families (grants): the rule that makes one usable, and the
statements that issue, rotate and describe them. The token endpoint's hot path.

The rule (:data:`RULE`) is written once, as named conditions: the token belongs to a
grant of the presenting client, the grant is not revoked, neither has expired, the token
is unused, the account is not disabled, and a narrowed ``scope`` lies within the grant's
(RFC 6749 section 6, scopes separated by spaces). A rotation requires them all; a token
that did not rotate is described by which of them it fails (:func:`describe`), and
introspection reads the same description. What each dialect writes its own way is only
how the requested scopes are compared with the grant's (:class:`ScopesWithin`).

A rotation consumes a live refresh token of the calling client, stores its successor and
reads what the token response needs, atomically. Its statements are compiled once
(:class:`~idp.db.engine.Prebuilt`) and run on a pooled DB-API connection
(:meth:`Database.dbapi_connection`): an ORM session and SQLAlchemy's work around each
statement cost several times what the database spends running them (PERFORMANCE.md).

- PostgreSQL: one statement (a data-modifying CTE) in autocommit: one round trip, no
  BEGIN or COMMIT. Two rotations of one token queue on its row lock; the second
  re-checks ``used_at IS NULL`` once the first committed and matches nothing.
- SQLite: consume (``UPDATE ... RETURNING``, SQLite 3.35 or later), read the grant,
  store the successor, commit: one transaction under the process's writer lock.

What it reads of the grant's login session (left joined, never locked) lets the caller
give the new access token the acr that session has now. When a condition fails nothing
changes and the rotation's result is None: the caller asks :func:`describe` why.

A successor is derived from the token it succeeds (idp/oidc/tokens.py), so a rotation
presented again, a retry after a lost answer, can be answered with the successor already
stored: :meth:`RefreshRotation.retried` reads it, and writes nothing.

On PostgreSQL the statement can also be awaited on the event loop
(:meth:`RefreshRotation.rotate_awaited`, idp/db/awaited.py), so that a worker does not sit
idle through each commit's WAL flush.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    LargeBinary,
    String,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    insert,
    not_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from idp.db.engine import Database, Plan, Prebuilt
from idp.db.models import Account, Grant, LoginSession, RefreshToken, UTCDateTime

_TOKENS = RefreshToken.__table__
_GRANTS, _ACCOUNTS, _SESSIONS = Grant.__table__, Account.__table__, LoginSession.__table__


class ScopeList(TypeDecorator[list[str]]):
    """A list of scopes as a statement parameter: a ``text[]`` on PostgreSQL, a JSON array
    on SQLite (read there with ``json_each``)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Text))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: list[str] | None, dialect: Any) -> Any:
        scopes = list(value or ())
        return scopes if dialect.name == "postgresql" else json.dumps(scopes)


class ScopesWithin(ColumnElement[bool]):
    """True when every requested scope is one of ``scope``'s (space-separated) scopes."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("scope", InternalTraversal.dp_clauseelement),
        ("requested", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, scope: ColumnElement[str], requested: ColumnElement[list[str]]) -> None:
        self.scope = scope
        self.requested = requested

    @property
    def _from_objects(self) -> list[Any]:
        return self.scope._from_objects


@compiles(ScopesWithin, "postgresql")
def _scopes_within_postgresql(element: ScopesWithin, compiler: Any, **kw: Any) -> str:
    scope = compiler.process(element.scope, **kw)
    return f"string_to_array({scope}, ' ') @> {compiler.process(element.requested, **kw)}"


@compiles(ScopesWithin, "sqlite")
def _scopes_within_sqlite(element: ScopesWithin, compiler: Any, **kw: Any) -> str:
    # Both parts are compiled SQL (a column, a bound parameter): no value is put in here.
    scope = compiler.process(element.scope, **kw)
    requested = compiler.process(element.requested, **kw)
    return (
        f"NOT EXISTS (SELECT 1 FROM json_each({requested}) AS requested"  # noqa: S608
        f" WHERE instr(' ' || {scope} || ' ', ' ' || requested.value || ' ') = 0)"
    )


# The statements' parameters: when, which token (its digest), for which client, the
# scopes a refresh narrows to (none: the grant's), and the successor's digest to store.
NOW = bindparam("now", type_=UTCDateTime())
DIGEST = bindparam("digest", type_=LargeBinary())
CLIENT_ID = bindparam("client_id", type_=String())
SCOPES = bindparam("scopes", type_=ScopeList())
SUCCESSOR = cast(bindparam("successor", type_=LargeBinary()), LargeBinary())

# The names of the rule's conditions: what a presented token can fail.
WRONG_CLIENT = "wrong_client"
REVOKED = "revoked"
EXPIRED = "expired"
USED = "used"
ACCOUNT_DISABLED = "account_disabled"
SCOPE_BEYOND_GRANT = "scope_beyond_grant"

# The refresh rule: what makes a presented token usable, one condition per way it can fail,
# in the order a refusal names them (over ``refresh_tokens``, its grant and the account).
RULE: tuple[tuple[str, ColumnElement[bool]], ...] = (
    (WRONG_CLIENT, _GRANTS.c.client_id == CLIENT_ID),
    (REVOKED, _GRANTS.c.revoked_at.is_(None)),
    (EXPIRED, and_(_TOKENS.c.expires_at > NOW, _GRANTS.c.expires_at > NOW)),
    (USED, _TOKENS.c.used_at.is_(None)),
    (ACCOUNT_DISABLED, _ACCOUNTS.c.disabled_at.is_(None)),
    (SCOPE_BEYOND_GRANT, ScopesWithin(_GRANTS.c.scope, SCOPES)),
)
_FAMILY = (_GRANTS.c.id == _TOKENS.c.grant_id, _ACCOUNTS.c.id == _GRANTS.c.account_id)
_LIVE = tuple(condition for _, condition in RULE)


def _rule_but(*names: str) -> tuple[ColumnElement[bool], ...]:
    return tuple(condition for name, condition in RULE if name not in names)


# What a rotation returns, in this order (see Rotated): the grant and its account ...
_GRANT_COLUMNS = (
    _GRANTS.c.id,
    _GRANTS.c.account_id,
    _GRANTS.c.scope,
    _GRANTS.c.auth_time,
    _GRANTS.c.acr,
    _GRANTS.c.amr,
    _GRANTS.c.expires_at,
    _ACCOUNTS.c.subject,
    _ACCOUNTS.c.proofing_level,
)
# ... and the grant's login session, left joined.
_SESSION_COLUMNS = (
    _SESSIONS.c.methods,
    _SESSIONS.c.ended_at,
    _SESSIONS.c.expires_at,
    _SESSIONS.c.last_seen_at,
)
_GRANT_WITH_SESSION = _GRANTS.join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id).outerjoin(
    _SESSIONS, _SESSIONS.c.id == _GRANTS.c.login_session_id
)

# A refresh token, as stored: also the successor of a rotation on SQLite.
_ISSUE = Prebuilt(insert(_TOKENS))

# PostgreSQL: consume the live token, store the successor (if one is given) in its family,
# return the grant with its login session; one statement.
_CONSUMED = (
    update(_TOKENS)
    .where(_TOKENS.c.token_digest == DIGEST, *_FAMILY, *_LIVE)
    .values(used_at=NOW)
    .returning(*_GRANT_COLUMNS, _GRANTS.c.login_session_id)
    .cte("consumed")
)
_SUCCEEDED = (
    insert(_TOKENS)
    .from_select(
        ["token_digest", "grant_id", "created_at", "expires_at"],
        select(SUCCESSOR, _CONSUMED.c.id, NOW, _CONSUMED.c.expires_at).where(
            SUCCESSOR.is_not(None)
        ),
    )
    .cte("successor")
)
ROTATE_POSTGRESQL = Prebuilt(
    select(*(_CONSUMED.c[column.name] for column in _GRANT_COLUMNS), *_SESSION_COLUMNS)
    .select_from(_CONSUMED.outerjoin(_SESSIONS, _SESSIONS.c.id == _CONSUMED.c.login_session_id))
    .add_cte(_SUCCEEDED)
)

# SQLite: consume the live token; read its grant; store the successor.
CONSUME_SQLITE = Prebuilt(
    update(_TOKENS)
    .where(_TOKENS.c.token_digest == DIGEST, exists().where(*_FAMILY, *_LIVE))
    .values(used_at=NOW)
    .returning(_TOKENS.c.grant_id)
)
GRANT_SQLITE = Prebuilt(
    select(*_GRANT_COLUMNS, *_SESSION_COLUMNS)
    .select_from(_GRANT_WITH_SESSION)
    .where(_GRANTS.c.id == bindparam("grant_id"))
)

# A token rotated since ``since`` whose family is otherwise live (the rule but for its
# use and a narrowing, which the caller checked), with what the token response needs and
# the successor it was given, if that was stored.
_SUCCESSOR_ROW = _TOKENS.alias("successor")
RETRIED = Prebuilt(
    select(
        *_GRANT_COLUMNS, *_SESSION_COLUMNS, _SUCCESSOR_ROW.c.token_digest, _SUCCESSOR_ROW.c.used_at
    )
    .select_from(
        _TOKENS.join(_GRANTS, _GRANTS.c.id == _TOKENS.c.grant_id)
        .join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id)
        .outerjoin(_SESSIONS, _SESSIONS.c.id == _GRANTS.c.login_session_id)
        .outerjoin(
            _SUCCESSOR_ROW,
            and_(
                _SUCCESSOR_ROW.c.token_digest == bindparam("derived", type_=LargeBinary()),
                _SUCCESSOR_ROW.c.grant_id == _TOKENS.c.grant_id,
            ),
        )
    )
    .where(
        _TOKENS.c.token_digest == DIGEST,
        _TOKENS.c.used_at > bindparam("since", type_=UTCDateTime()),
        *_rule_but(USED, SCOPE_BEYOND_GRANT),
    )
)

# A stored token, its family, and for each of the rule's conditions whether it fails it.
DESCRIBED = Prebuilt(
    select(
        _GRANTS.c.id,
        _GRANTS.c.client_id,
        _GRANTS.c.account_id,
        _GRANTS.c.scope,
        _TOKENS.c.created_at,
        _TOKENS.c.expires_at,
        _TOKENS.c.used_at,
        *(not_(condition).label(name) for name, condition in RULE),
    )
    .select_from(
        _TOKENS.join(_GRANTS, _GRANTS.c.id == _TOKENS.c.grant_id).join(
            _ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id
        )
    )
    .where(_TOKENS.c.token_digest == DIGEST)
)


@dataclass(frozen=True, slots=True)
class Rotated:
    """A consumed refresh token's grant, with its account's subject and proofing level and
    its login session's methods and state (None when that row is gone): what the token
    response needs, its acr included. Plain values, not a :class:`Grant`: building an ORM
    object cost a refresh more than its ES256 signature."""

    id: str
    account_id: int
    scope: str
    auth_time: datetime
    acr: str | None
    amr: list[Any]
    expires_at: datetime
    subject: str
    proofing: str
    session_methods: list[Any] | None
    session_ended_at: datetime | None
    session_expires_at: datetime | None
    session_last_seen_at: datetime | None
    client_id: str


@dataclass(slots=True)
class PendingRotation:
    """One rotation's inputs (the successor derived in advance) and, once it ran, its outcome.

    ``scopes`` is a narrowing the client asked for (empty: none); ``successor`` is None
    when none is due, ``derived_digest`` the digest of the token's successor all the
    same (a retry looks for it); ``rotated`` stays None when the token was not live
    (nothing changed).
    """

    token_digest: bytes
    client_id: str
    scopes: list[str]
    now: datetime
    successor: str | None
    successor_digest: bytes | None
    derived_digest: bytes
    ran: bool = False
    rotated: Rotated | None = None


@dataclass(frozen=True, slots=True)
class Presented:
    """A stored refresh token as one client presents it: its family, and the names of the
    rule's conditions it fails (in :data:`RULE`'s order; none: it is usable)."""

    grant_id: str
    client_id: str  # the grant's
    account_id: int
    scope: str  # the grant's
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    failed: tuple[str, ...]


def issue(
    uow: Session, token_digest: bytes, grant_id: str, now: datetime, expires_at: datetime
) -> None:
    """Store a new refresh token (its digest) in the family of ``grant_id``."""
    _ISSUE.execute(
        uow,
        {
            "token_digest": token_digest,
            "grant_id": grant_id,
            "created_at": now,
            "expires_at": expires_at,
        },
    )


def describe(
    uow: Session, token_digest: bytes, client_id: str, scopes: list[str], now: datetime
) -> Presented | None:
    """The stored token of ``token_digest`` as ``client_id`` presents it at ``now``,
    narrowing to ``scopes`` (empty: none); None if no such token is stored."""
    rows = DESCRIBED.execute(
        uow, {"digest": token_digest, "client_id": client_id, "scopes": scopes, "now": now}
    )
    if not rows:
        return None
    grant_id, grant_client, account_id, scope, created_at, expires_at, used_at, *fails = rows[0]
    failed = tuple(name for (name, _), fail in zip(RULE, fails, strict=True) if fail)
    return Presented(
        grant_id, grant_client, account_id, scope, created_at, expires_at, used_at, failed
    )


# The parameters of each rotation statement.
_ROTATION = frozenset({"now", "digest", "client_id", "scopes", "successor"})
_CONSUMPTION = _ROTATION - {"successor"}
_SUCCESSION = frozenset({"token_digest", "grant_id", "created_at", "expires_at"})


class RefreshRotation:
    """The rotation of refresh tokens on one database.

    Its statements run from their compiled plans (:meth:`Prebuilt.plan`), with the few
    parameter conversions done once per rotation here: a refresh's time went to
    converting each statement's parameters anew (``now`` is in two of them, and the
    successor's expiry was converted back from the row that had just been read).
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        dialect = database.engine.dialect
        self.postgresql = dialect.name == "postgresql"
        self._bind_time = _bind_processor(NOW.type, dialect)
        self._bind_scopes = _bind_processor(SCOPES.type, dialect)
        self._rotate = ROTATE_POSTGRESQL.plan(dialect, _ROTATION)
        self._consume = CONSUME_SQLITE.plan(dialect, _CONSUMPTION)
        self._grant = GRANT_SQLITE.plan(dialect, frozenset({"grant_id"}))
        self._succeed = _ISSUE.plan(dialect, _SUCCESSION)

    def rotate(self, uow: Session, pending: PendingRotation) -> None:
        """Consume the live token, store the successor (if any) in its family; note the result.

        ``uow`` is the request's unit of work, used only where SQLite would otherwise
        make this thread wait on itself (see :meth:`_sqlite`).
        """
        values = self._values(pending)
        if self.postgresql:
            with self.database.dbapi_connection(autocommit=True) as connection:
                row = _run(self._rotate, connection, values).fetchone()
            _note(pending, self._rotate.converted(row))
        else:
            _note(pending, self._sqlite(uow, values))

    async def rotate_awaited(self, pending: PendingRotation) -> None:
        """:meth:`rotate` on PostgreSQL, awaited: the event loop serves others meanwhile."""
        assert self.database.awaited is not None
        plan = self._rotate
        row = await self.database.awaited.fetchone(plan.sql, self._values(pending))
        _note(pending, plan.converted(row))

    def retried(self, uow: Session, pending: PendingRotation, since: datetime) -> Rotated | None:
        """The grant of a token this client rotated after ``since``, to answer again with
        the successor it was given; None unless the grant is live and that successor
        unused (and stored, when one is due). Reads only: the answer is the first one's.
        """
        rows = RETRIED.execute(
            uow,
            {
                "digest": pending.token_digest,
                "derived": pending.derived_digest,
                "since": since,
                "client_id": pending.client_id,
                "now": pending.now,
            },
        )
        if not rows:
            return None
        *values, stored, used_at = rows[0]
        if used_at is not None or (pending.successor_digest is not None and stored is None):
            # The successor was used: whoever holds it moved on, and this answer would
            # hand out a spent token. Or the first answer had none to give.
            return None
        return Rotated(*values, client_id=pending.client_id)

    def _values(self, pending: PendingRotation) -> dict[str, Any]:
        """The rotation's parameters, converted as the columns store them."""
        return {
            "now": self._bind_time(pending.now),
            "digest": pending.token_digest,
            "client_id": pending.client_id,
            "scopes": self._bind_scopes(pending.scopes),
            "successor": pending.successor_digest,
        }

    def _sqlite(self, uow: Session, values: dict[str, Any]) -> tuple[Any, ...] | None:
        if self.database.writing_here():
            # This request already writes through its session (a private_key_jwt
            # assertion's jti). SQLite lets one connection write at a time and this
            # thread holds the writer lock: the statements join the session's
            # transaction and commit with it rather than wait on it.
            return self._sqlite_statements(uow.connection().connection.dbapi_connection, values)
        with self.database.dbapi_connection() as connection:
            return self._sqlite_statements(connection, values)

    def _sqlite_statements(self, connection: Any, values: dict[str, Any]) -> tuple[Any, ...] | None:
        consumed = _run(self._consume, connection, values).fetchall()
        if not consumed:
            return None
        grant_id = consumed[0][0]
        row = _run(self._grant, connection, {"grant_id": grant_id}).fetchone()
        if values["successor"] is not None:
            # The grant's expiry as read, and ``now`` as bound: no conversion back and forth.
            stored = {
                "token_digest": values["successor"],
                "grant_id": grant_id,
                "created_at": values["now"],
                "expires_at": row[_EXPIRES_AT],
            }
            _run(self._succeed, connection, stored)
        return self._grant.converted(row)


# Where the grant's expiry is among the columns a rotation returns.
_EXPIRES_AT = 6


def _bind_processor(type_: Any, dialect: Any) -> Any:
    return type_.dialect_impl(dialect).bind_processor(dialect) or _same


def _same(value: Any) -> Any:
    return value


def _run(plan: Plan, connection: Any, values: dict[str, Any]) -> Any:
    """Execute a compiled plan on a DB-API connection with converted ``values``; the cursor."""
    arguments = values if plan.order is None else tuple(values[name] for name in plan.order)
    return connection.execute(plan.sql, arguments)


def _note(pending: PendingRotation, row: tuple[Any, ...] | None) -> None:
    pending.ran = True
    if row is not None:
        pending.rotated = Rotated(*row, client_id=pending.client_id)
