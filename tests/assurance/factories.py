"""Factories for assurance tests: accounts at a proofing level, sessions, factors."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import proofing, signin, totp
from idp.accounts.realms import CITIZEN
from idp.db.engine import Database
from idp.db.models import Account, LoginSession, VerifiedIdentity
from idp.keys.secret import CodeDigests, derive_key, load_secret_key
from idp.keys.secretbox import SecretBox
from idp.settings import Settings
from tests.oidc import factories as oidc_factories


def account(session: Session, proofing: str = "low", email: str | None = None) -> Account:
    """An account with a verified email at ``proofing`` level."""
    now = clock.now(session)
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
    """A login session of ``owner`` opened by the sign-in flow: (cookie token, row)."""
    opened = signin.open_login_session(
        session,
        settings,
        CITIZEN,
        owner.id,
        [signin.Proven(method) for method in methods],
        ip=None,
        user_agent=None,
        replacing=None,
    )
    return opened.token, session.get_one(LoginSession, opened.id)


def verified_identity(session: Session, method: str = "pipp", **values) -> VerifiedIdentity:
    """A verified identity as a clerk would record it now (Erika Mustermann, the test-card
    person)."""

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
        "verified_at": clock.now(session),
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


@dataclass(frozen=True)
class Citizen:
    """A citizen who logs in with a password and holds an authenticator app's secret."""

    account_id: int
    email: str
    password: str
    totp_secret: str | None


def secret_box(settings: Settings) -> SecretBox:
    """The box the server seals TOTP secrets with (derived from the service secret)."""
    return SecretBox(derive_key(load_secret_key(settings), "factor-secrets"))


def code_digests(settings: Settings) -> CodeDigests:
    """The keyed digests the server stores recovery and email codes as."""
    return CodeDigests(load_secret_key(settings))


def citizen(db: Database, settings: Settings, *, proofed: bool, with_totp: bool) -> Citizen:
    """A password account; ``with_totp``: an authenticator app added in a low session;
    ``proofed``: identified in person (Erika Mustermann) afterwards, confirming the app
    there, which binds it."""
    email, password = oidc_factories.password_account(db, settings)
    secret = None
    proven: list[int] = []
    with db.unit_of_work() as session:
        owner = session.scalars(select(Account).where(Account.email == email)).one()
        if with_totp:
            box = secret_box(settings)
            enrolment = totp.begin(session, owner, box, settings.issuer)
            # The first code from the previous time step, so that the current one is
            # still unused when the test computes it (the test's clock stands still).
            earlier = clock.now(session) - timedelta(seconds=totp.STEP)
            first = pyotp.TOTP(enrolment.secret).at(earlier)
            factor = totp.confirm(session, owner, enrolment.flow_id, first, box, "low_session")
            secret = enrolment.secret
            proven.append(factor.id)
        if proofed:
            # The citizen confirmed the app at the counter: it is the factor proofing binds.
            proofing.record_proofing(
                session, owner, verified_identity(session), proven_factors=proven
            )
        return Citizen(owner.id, email, password, secret)
