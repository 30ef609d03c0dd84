"""Factories for assurance tests: accounts at a proofing level, sessions, factors."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import sessions
from idp.db.models import Account, LoginSession
from idp.settings import Settings


def account(session: Session, proofing: str = "low", email: str | None = None) -> Account:
    """An account with a verified email at ``proofing`` level."""
    now = clock.now()
    row = Account(
        subject=secrets.token_urlsafe(16),
        email=email or f"{secrets.token_hex(4)}@example.de",
        email_verified_at=now if proofing != "none" else None,
        proofing_level=proofing,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def login(
    session: Session, owner: Account, settings: Settings, methods: tuple[str, ...] = ("pwd",)
) -> tuple[str, LoginSession]:
    """A login session of ``owner``: (cookie token, row)."""
    return sessions.start_session(session, owner, list(methods), settings)
