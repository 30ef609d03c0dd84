"""Refresh-token rotation in prebuilt SQL: the token endpoint's hot path.

A rotation consumes a live refresh token of the calling client, stores its
successor and reads what the token response needs, atomically. The statements
are written out for each dialect and run on a pooled DB-API connection
(:meth:`Database.dbapi_connection`): SQLAlchemy's compiling, type processing and
events around each statement, and an ORM session around them, cost several
times what the database spends running them (PERFORMANCE.md).

- PostgreSQL: one statement (a data-modifying CTE) in autocommit: one round
  trip, no BEGIN or COMMIT. Two rotations of one token queue on its row lock;
  the second re-checks ``used_at IS NULL`` once the first committed and matches
  nothing.
- SQLite: consume (``UPDATE ... RETURNING``, SQLite 3.35 or later), read the
  grant, store the successor, commit: one transaction under the process's
  writer lock.

"Live" is all a refresh needs: the token unused and unexpired; its grant the
client's, unrevoked and unexpired; the account not disabled; a narrowed
``scope`` within the grant's (RFC 6749 section 6, scopes separated by spaces).
What it reads of the grant's login session (left joined, never locked) lets
the caller give the new access token the acr that session has now.
When any of that fails nothing changes and the rotation's result is None: the
caller finds out why (idp/oidc/tokens.py).

A successor is derived from the token it succeeds (idp/oidc/tokens.py), so a
rotation presented again, a retry after a lost answer, can be answered with
the successor already stored: :meth:`RefreshRotation.retried` reads it, and
writes nothing. That is the rare path, so it is a plain SQLAlchemy statement
on the request's session.

On PostgreSQL the statement can also be awaited on the event loop
(:meth:`RefreshRotation.rotate_awaited`, idp/db/awaited.py), so that a worker
does not sit idle through each commit's WAL flush.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from idp.db.engine import Database
from idp.db.models import Account, Grant, LoginSession, RefreshToken

POSTGRESQL = """
WITH consumed AS (
    UPDATE refresh_tokens SET used_at = %(now)s
    FROM grants JOIN accounts ON accounts.id = grants.account_id
         LEFT JOIN login_sessions ON login_sessions.id = grants.login_session_id
    WHERE refresh_tokens.token_digest = %(digest)s
      AND refresh_tokens.used_at IS NULL
      AND refresh_tokens.expires_at > %(now)s
      AND grants.id = refresh_tokens.grant_id
      AND grants.client_id = %(client_id)s
      AND grants.revoked_at IS NULL
      AND grants.expires_at > %(now)s
      AND accounts.disabled_at IS NULL
      AND string_to_array(grants.scope, ' ') @> %(scopes)s::text[]
    RETURNING grants.id, grants.account_id, grants.scope, grants.auth_time, grants.acr,
              grants.amr, grants.expires_at, accounts.subject,
              accounts.proofing_level, login_sessions.methods AS session_methods,
              login_sessions.ended_at AS session_ended_at,
              login_sessions.expires_at AS session_expires_at,
              login_sessions.last_seen_at AS session_last_seen_at
), successor AS (
    INSERT INTO refresh_tokens (token_digest, grant_id, created_at, expires_at)
    SELECT %(successor)s::bytea, id, %(now)s, expires_at FROM consumed
    WHERE %(successor)s::bytea IS NOT NULL
)
SELECT * FROM consumed
"""

SQLITE_CONSUME = """
UPDATE refresh_tokens SET used_at = :now
WHERE token_digest = :digest
  AND used_at IS NULL
  AND expires_at > :now
  AND EXISTS (
      SELECT 1 FROM grants JOIN accounts ON accounts.id = grants.account_id
      WHERE grants.id = refresh_tokens.grant_id
        AND grants.client_id = :client_id
        AND grants.revoked_at IS NULL
        AND grants.expires_at > :now
        AND accounts.disabled_at IS NULL
        AND NOT EXISTS (
            SELECT 1 FROM json_each(:scopes) AS requested
            WHERE instr(' ' || grants.scope || ' ', ' ' || requested.value || ' ') = 0))
RETURNING grant_id
"""

SQLITE_GRANT = """
SELECT grants.id, grants.account_id, grants.scope, grants.auth_time, grants.acr,
       grants.amr, grants.expires_at, accounts.subject,
       accounts.proofing_level, login_sessions.methods, login_sessions.ended_at,
       login_sessions.expires_at, login_sessions.last_seen_at
FROM grants JOIN accounts ON accounts.id = grants.account_id
     LEFT JOIN login_sessions ON login_sessions.id = grants.login_session_id
WHERE grants.id = :grant_id
"""

SQLITE_SUCCESSOR = """
INSERT INTO refresh_tokens (token_digest, grant_id, created_at, expires_at)
VALUES (:successor, :grant_id, :now, :expires_at)
"""

# What both dialects return, in order, and the model column each comes from.
_RETURNED = (
    Grant.__table__.c.id,
    Grant.__table__.c.account_id,
    Grant.__table__.c.scope,
    Grant.__table__.c.auth_time,
    Grant.__table__.c.acr,
    Grant.__table__.c.amr,
    Grant.__table__.c.expires_at,
    Account.__table__.c.subject,
    Account.__table__.c.proofing_level,
    LoginSession.__table__.c.methods,
    LoginSession.__table__.c.ended_at,
    LoginSession.__table__.c.expires_at,
    LoginSession.__table__.c.last_seen_at,
)
_EXPIRES_AT = 6

_PRESENTED = RefreshToken.__table__.alias("presented")
_SUCCESSOR = RefreshToken.__table__.alias("successor")
_GRANTS, _ACCOUNTS, _SESSIONS = Grant.__table__, Account.__table__, LoginSession.__table__
# A token rotated since ``since``, of a grant of the client that is still live, with
# what the token response needs and the successor it was given (if one was stored).
RETRIED = (
    select(*_RETURNED, _SUCCESSOR.c.token_digest, _SUCCESSOR.c.used_at)
    .select_from(
        _PRESENTED.join(_GRANTS, _GRANTS.c.id == _PRESENTED.c.grant_id)
        .join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id)
        .outerjoin(_SESSIONS, _SESSIONS.c.id == _GRANTS.c.login_session_id)
        .outerjoin(
            _SUCCESSOR,
            and_(
                _SUCCESSOR.c.token_digest == bindparam("successor"),
                _SUCCESSOR.c.grant_id == _PRESENTED.c.grant_id,
            ),
        )
    )
    .where(
        _PRESENTED.c.token_digest == bindparam("digest"),
        _PRESENTED.c.used_at > bindparam("since"),
        _GRANTS.c.client_id == bindparam("client_id"),
        _GRANTS.c.revoked_at.is_(None),
        _GRANTS.c.expires_at > bindparam("now"),
        _ACCOUNTS.c.disabled_at.is_(None),
    )
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


class RefreshRotation:
    """The rotation statements for one database, with the models' value conversions."""

    def __init__(self, database: Database) -> None:
        self.database = database
        dialect = database.engine.dialect
        self.postgresql = dialect.name == "postgresql"
        # The conversions the ORM applies to these columns, so values read and written
        # here are stored exactly as the rest of the service stores them.
        used_at = RefreshToken.__table__.c.used_at.type.dialect_impl(dialect)
        self._bind_time: Callable[[Any], Any] = used_at.bind_processor(dialect) or _same
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) or _same
            for column in _RETURNED
        ]

    def rotate(self, uow: Session, pending: PendingRotation) -> None:
        """Consume the live token, store the successor (if any) in its family; note the result.

        ``uow`` is the request's unit of work, used only where SQLite would otherwise
        make this thread wait on itself (see :meth:`_sqlite`).
        """
        params = self._params(pending)
        if self.postgresql:
            with self.database.dbapi_connection(autocommit=True) as connection:
                row = connection.execute(POSTGRESQL, params).fetchone()
        else:
            row = self._sqlite(uow, params)
        self._note(pending, row)

    async def rotate_awaited(self, pending: PendingRotation) -> None:
        """:meth:`rotate` on PostgreSQL, awaited: the event loop serves others meanwhile."""
        assert self.database.awaited is not None
        self._note(pending, await self.database.awaited.fetchone(POSTGRESQL, self._params(pending)))

    def retried(self, uow: Session, pending: PendingRotation, since: datetime) -> Rotated | None:
        """The grant of a token this client rotated after ``since``, to answer again with
        the successor it was given; None unless the grant is live and that successor
        unused (and stored, when one is due). Reads only: the answer is the first one's.
        """
        row = uow.execute(
            RETRIED,
            {
                "digest": pending.token_digest,
                "successor": pending.derived_digest,
                "since": since,
                "client_id": pending.client_id,
                "now": pending.now,
            },
        ).first()
        if row is None:
            return None
        *values, stored, used_at = row
        if used_at is not None or (pending.successor_digest is not None and stored is None):
            # The successor was used: whoever holds it moved on, and this answer would
            # hand out a spent token. Or the first answer had none to give.
            return None
        return Rotated(*values, client_id=pending.client_id)

    def _params(self, pending: PendingRotation) -> dict[str, Any]:
        return {
            "now": self._bind_time(pending.now),
            "digest": pending.token_digest,
            "client_id": pending.client_id,
            "successor": pending.successor_digest,
            "scopes": pending.scopes if self.postgresql else json.dumps(pending.scopes),
        }

    def _note(self, pending: PendingRotation, row: tuple[Any, ...] | None) -> None:
        pending.ran = True
        if row is not None:
            pending.rotated = Rotated(
                *(convert(value) for convert, value in zip(self._results, row, strict=True)),
                client_id=pending.client_id,
            )

    def _sqlite(self, uow: Session, params: dict[str, Any]) -> tuple[Any, ...] | None:
        if self.database.writing_here():
            # This request already writes through its session (a private_key_jwt
            # assertion's jti). SQLite lets one connection write at a time and this
            # thread holds the writer lock: the statements join the session's
            # transaction and commit with it rather than wait on it.
            return _sqlite_statements(uow.connection().connection.dbapi_connection, params)
        with self.database.dbapi_connection() as connection:
            return _sqlite_statements(connection, params)


def _sqlite_statements(connection: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
    consumed = connection.execute(SQLITE_CONSUME, params).fetchall()
    if not consumed:
        return None
    row = connection.execute(SQLITE_GRANT, {"grant_id": consumed[0][0]}).fetchone()
    if params["successor"] is not None:
        connection.execute(
            SQLITE_SUCCESSOR,
            {**params, "grant_id": row[0], "expires_at": row[_EXPIRES_AT]},
        )
    return row


def _same(value: Any) -> Any:
    return value
