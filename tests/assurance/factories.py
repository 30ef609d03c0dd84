"""Factories for assurance tests: accounts at a proofing level, sessions, factors."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import sessions
from idp.db.models import Account, LoginSession, VerifiedIdentity
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


def verified_identity(method: str = "pipp", **values) -> VerifiedIdentity:
    """A verified identity as a clerk would record it (Erika Mustermann, the test-card person)."""

    fields = {
        "given_name": "Erika",
        "family_name": "Mustermann",
        "birth_family_name": "Gabler",
        "birthdate": "1964-08-12",
        "place_of_birth_locality": "Berlin",
        "place_of_birth_country": "DEU",
        "street_address": "Heidestraße 17",
        "postal_code": "51147",
        "locality": "Köln",
        "country": "DEU",
        "nationalities": ["DEU"],
        "evidence_method": method,
        "verified_at": clock.now(),
        "verifier": "Bürgerbüro Mitte" if method == "pipp" else "eID-Service",
        "document_type": "idcard",
        "document_issuer_country": "DEU",
        "document_expiry": "2031-01-31",
        "trust_framework": "eidas",
        "assurance_level": "high",
        "txn": secrets.token_urlsafe(16),
    }
    fields.update(values)
    return VerifiedIdentity(**fields)
