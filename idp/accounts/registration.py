"""Registration and email verification of guest accounts.

Registering answers the same for a new and an already registered address: the
password is checked and hashed either way, a verification flow is opened
either way, and the mail says either "confirm your address" (new) or "you
already have an account" (known). The verification mail carries a link and a
six-digit code; both are single use, valid ``IDP_EMAIL_VERIFICATION_HOURS``,
stored as digests in the flow, and the code allows five tries. Verifying sets
the account's proofing level from ``none`` to ``low``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts.emails import normalise_email
from idp.accounts.errors import (
    AccountError,
    AccountExists,
    ConsentMissing,
    FormInvalid,
    InvalidEmail,
    PasswordRejected,
    ResendTooSoon,
    TooManyFlows,
    VerificationFailed,
)
from idp.accounts.passwords import check_password, passwords_for
from idp.audit.events import record
from idp.db import rate_limits
from idp.db.models import Account, Flow
from idp.mail.outbox import enqueue
from idp.settings import Settings

KIND = "verify_email"
CODE_TRIES = 5


def digest(value: str) -> str:
    """Stored form of a link token, code or browser id."""
    return hashlib.sha256(value.encode()).hexdigest()


def matches(value: str | None, stored: str | None) -> bool:
    """Constant-time comparison of a presented secret with its stored digest."""
    if not value or not stored:
        return False
    return hmac.compare_digest(digest(value), stored)


def _new_secrets(flow_id: str) -> tuple[str, str, dict[str, str]]:
    token = secrets.token_urlsafe(32)
    code = f"{secrets.randbelow(1_000_000):06d}"
    return token, code, {"token_digest": digest(token), "code_digest": digest(flow_id + code)}


def _send(
    session: Session, flow: Flow, settings: Settings, token: str, code: str, locale: str
) -> None:
    email = flow.state["email"]
    if flow.account_id is None:
        enqueue(
            session,
            email,
            "account_exists",
            locale,
            {
                "login_link": f"{settings.issuer}/login?{urlencode({'login_hint': email})}",
                "reset_link": f"{settings.issuer}/password/forgot",
            },
        )
        return
    enqueue(
        session,
        email,
        "verify_email",
        locale,
        {
            "link": f"{settings.issuer}/verify-email?flow={flow.id}&token={token}",
            "code": code,
            "hours": settings.email_verification_hours,
        },
    )


def _open_flow(
    session: Session,
    account: Account | None,
    email: str,
    settings: Settings,
    *,
    locale: str,
    browser: str | None,
    return_to: str | None,
) -> Flow:
    now = clock.now()
    flow_id = secrets.token_urlsafe(16)
    token, code, digests = _new_secrets(flow_id)
    flow = Flow(
        id=flow_id,
        kind=KIND,
        account_id=account.id if account else None,
        state={
            "email": email,
            "locale": locale,
            "browser": digest(browser) if browser else None,
            "tries": 0,
            "sent_at": now.isoformat(),
            **digests,
        },
        return_to=return_to,
        created_at=now,
        expires_at=now + timedelta(hours=settings.email_verification_hours),
    )
    session.add(flow)
    session.flush()
    _send(session, flow, settings, token, code, locale)
    return flow


def register(
    session: Session,
    settings: Settings,
    *,
    email: str,
    password: str,
    consent: bool,
    locale: str,
    browser: str | None = None,
    return_to: str | None = None,
    ip: str | None = None,
) -> Flow:
    """Register ``email`` (or, if taken, tell its owner by mail); return the verification flow.

    Raises FormInvalid (every problem: email, password, consent) before anything is written,
    TooManyFlows beyond the client address's flows a minute.
    """
    email, password, problems = _checked(email, password, settings)
    if not consent:
        problems.append(ConsentMissing("register.consent_missing"))
    if problems:
        raise FormInvalid(problems)
    # Hash before looking the address up: both answers cost the same time.
    password_hash = passwords_for(settings).hash(password)
    # Counted after the hash: the count's write holds SQLite's one writer until the commit.
    admission = rate_limits.admit_flow(session, ip, settings.flows_per_ip_minute)
    if not admission.admitted:
        raise TooManyFlows(admission.retry_after)
    now = clock.now()
    account: Account | None = None
    if session.scalar(select(Account.id).where(Account.email == email)) is None:
        account = Account(
            subject=str(uuid.uuid4()),
            email=email,
            password_hash=password_hash,
            proofing_level="none",
            locale=locale,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(account)
        except IntegrityError:  # registered by a concurrent request a moment ago
            account = None
    existing = None if account else session.scalar(select(Account).where(Account.email == email))
    flow = _open_flow(
        session,
        account,
        email,
        settings,
        locale=locale,
        browser=browser,
        return_to=return_to,
    )
    if account is not None:
        record(session, "account.registered", account_id=account.id, ip=ip)
    else:
        record(
            session,
            "account.registration_for_existing_email",
            account_id=existing.id if existing else None,
            ip=ip,
        )
    return flow


def create_account(
    session: Session, settings: Settings, *, email: str, password: str, verified: bool
) -> Account:
    """An account made by an operator (tests, demos): no mail, optionally already verified.

    Raises FormInvalid for a bad address or password, AccountExists if it is taken.
    """
    email, password, problems = _checked(email, password, settings)
    if problems:
        raise FormInvalid(problems)
    if session.scalar(select(Account.id).where(Account.email == email)) is not None:
        raise AccountExists("account.exists")
    now = clock.now()
    account = Account(
        subject=str(uuid.uuid4()),
        email=email,
        password_hash=passwords_for(settings).hash(password),
        proofing_level="low" if verified else "none",
        email_verified_at=now if verified else None,
        locale="de",
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    session.flush()
    record(session, "account.created", actor="cli", account_id=account.id)
    return account


def start_verification(
    session: Session, account: Account, settings: Settings, *, browser: str | None
) -> Flow:
    """A new verification mail for a logged-in citizen whose address is unconfirmed."""
    return _open_flow(
        session,
        account,
        account.email,
        settings,
        locale=account.locale,
        browser=browser,
        return_to="/account",
    )


def open_flow(session: Session, flow_id: str | None) -> Flow:
    """The unfinished, unexpired verification flow ``flow_id``; raise VerificationFailed."""
    flow = session.get(Flow, flow_id, with_for_update=True) if flow_id else None
    if (
        flow is None
        or flow.kind != KIND
        or flow.completed_at is not None
        or flow.expires_at <= clock.now()
    ):
        raise VerificationFailed("verify.invalid")
    return flow


@dataclass(frozen=True)
class Verified:
    account: Account
    same_browser: bool  # verified in the browser that registered: it may be logged in
    return_to: str | None


def verify(
    session: Session,
    flow_id: str | None,
    *,
    token: str | None = None,
    code: str | None = None,
    browser: str | None = None,
    ip: str | None = None,
) -> Verified:
    """Confirm the address with the link's token or the code; raise VerificationFailed.

    A wrong code is counted (the caller commits even when this raises).
    """
    flow = open_flow(session, flow_id)
    state = dict(flow.state)
    if token:
        ok = matches(token, state["token_digest"])
    else:
        if state["tries"] >= CODE_TRIES:
            raise VerificationFailed("verify.too_many_tries")
        state["tries"] += 1
        flow.state = state
        ok = matches(flow.id + (code or "").strip().replace(" ", ""), state["code_digest"])
    if not ok or flow.account_id is None:
        raise VerificationFailed("verify.wrong_code" if code is not None else "verify.invalid")
    now = clock.now()
    flow.completed_at = now
    account = session.get(Account, flow.account_id)
    assert account is not None  # the flow's foreign key cascades
    if account.email_verified_at is None:
        account.email_verified_at = now
    if account.proofing_level == "none":
        account.proofing_level = "low"
    account.updated_at = now
    record(session, "account.email_verified", account_id=account.id, ip=ip)
    return Verified(account, matches(browser, state.get("browser")), flow.return_to)


def resend(session: Session, flow_id: str | None, settings: Settings) -> Flow:
    """Send the mail of a verification flow again with a new link and code."""
    flow = open_flow(session, flow_id)
    state = dict(flow.state)
    wait = datetime.fromisoformat(state["sent_at"]) + timedelta(
        seconds=settings.email_resend_seconds
    )
    now = clock.now()
    if now < wait:
        raise ResendTooSoon("verify.resend_too_soon", seconds=int((wait - now).total_seconds()) + 1)
    token, code, digests = _new_secrets(flow.id)
    state.update(digests, tries=0, sent_at=now.isoformat())
    flow.state = state
    flow.expires_at = now + timedelta(hours=settings.email_verification_hours)
    _send(session, flow, settings, token, code, state["locale"])
    return flow


def _checked(email: str, password: str, settings: Settings) -> tuple[str, str, list[AccountError]]:
    """The normalised address and the checked password, with every problem found in either."""
    problems: list[AccountError] = []
    try:
        email = normalise_email(email)
    except InvalidEmail as exc:
        problems.append(exc)
    try:
        password = check_password(password, email, settings)
    except PasswordRejected as exc:
        problems.append(exc)
    return email, password, problems
