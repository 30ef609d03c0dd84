"""The ``jti`` of each ``private_key_jwt`` client assertion, kept until the assertion
expires, so that one is accepted once (RFC 7523 3)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.db.models import ClientAssertionJti


def first_use(uow: Session, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Remember the client's assertion ``jti`` until ``expires_at``; False if it was seen
    before (nothing is changed then)."""
    try:
        with uow.begin_nested():
            uow.execute(
                insert(ClientAssertionJti).values(
                    client_id=client_id, jti=jti, expires_at=expires_at
                )
            )
    except IntegrityError:
        return False
    return True
