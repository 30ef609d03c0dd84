"""Authorization codes (their digests): single use, short-lived, bound to a client.

A code is consumed by the one statement that finds it (:func:`consume`), so two
exchanges of one code cannot both succeed; a code presented again is found used
(:func:`find`), and the grant it started is revoked by the caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt, PrebuiltLoad
from idp.db.models import AuthorizationCode

_CODES = AuthorizationCode.__table__
# Every consent ends in a code: an ORM object added for it and flushed at the commit cost
# more than the insert.
_SAVE = Prebuilt(insert(_CODES))
# Consume a client's unused code and return it, in one statement.
_CONSUME = PrebuiltLoad(
    AuthorizationCode,
    changing=update(_CODES)
    .where(
        _CODES.c.code_digest == bindparam("digest"),
        _CODES.c.client_id == bindparam("for_client"),
        _CODES.c.used_at.is_(None),
    )
    .values(used_at=bindparam("now")),
)


def save(
    uow: Session,
    code_digest: bytes,
    *,
    client_id: str,
    account_id: int,
    login_session_id: int | None,
    sid: str | None,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
    claims: dict[str, Any] | None,
    auth_time: datetime,
    acr: str | None,
    amr: list[str],
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store a new, unused code (its digest) with what its exchange will need."""
    _SAVE.execute(
        uow,
        {
            "code_digest": code_digest,
            "client_id": client_id,
            "account_id": account_id,
            "login_session_id": login_session_id,
            "sid": sid,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
            "claims": claims,
            "auth_time": auth_time,
            "acr": acr,
            "amr": amr,
            "created_at": now,
            "expires_at": expires_at,
            "used_at": None,
            "grant_id": None,
        },
    )


def consume(
    uow: Session, code_digest: bytes, client_id: str, now: datetime
) -> AuthorizationCode | None:
    """The client's unused code, marked used now (expired or not: the caller checks); None
    if there is no such code. The row is attached to ``uow``: setting its ``grant_id``
    is written with the rest of the request."""
    return _CONSUME.get(uow, digest=code_digest, for_client=client_id, now=now)


def find(uow: Session, code_digest: bytes) -> AuthorizationCode | None:
    """The code, whatever its state and client."""
    return uow.get(AuthorizationCode, code_digest)
