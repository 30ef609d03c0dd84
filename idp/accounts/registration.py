"""Registration and email verification of guest accounts.

Registering answers the same for a new and an already registered address: the
password is checked and hashed either way, a verification flow is opened
either way, and the mail says either "confirm your address" (new) or "you
already have an account" (known). The verification mail carries a link and a
six-digit code; both are single use, valid ``IDP_EMAIL_VERIFICATION_HOURS``,
stored as digests in the flow (the code keyed with the service secret).

A registration is two steps: :func:`apply` checks the form and hashes the
password (awaited, no transaction open), :func:`register` writes it in one
short transaction (on SQLite it holds the one writer of every worker).

Guessing the code is bounded three ways: an account has one live verification
flow (asking again mails that flow's new code, never opens another); a new mail,
and so a new code, only after the mail cool-down (``IDP_EMAIL_RESEND_SECONDS``);
each code allows five tries and an address ``IDP_EMAIL_CODE_DAILY_TRIES`` per day
across all its codes. Tries are counted by compare-and-set before the code is
compared (:mod:`idp.db.counters`), so parallel guesses get no more between them.
The link's 256-bit token is not counted. Verifying sets the account's proofing
level from ``none`` to ``low``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import select, update
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
from idp.accounts.realms import CITIZEN
from idp.accounts.sessions import load_session
from idp.accounts.signin import PASSWORD, OpenedSession, open_login_session
from idp.audit.events import record
from idp.db import counters, flows, rate_limits
from idp.db.models import Account, Flow
from idp.keys.secret import CodeDigests
from idp.mail.outbox import cool_down_left, enqueue
from idp.settings import Settings

KIND = "verify_email"
CODE_TRIES = 5
CODE_PURPOSE = "email-codes"
DAY = timedelta(days=1)


def digest(value: str) -> str:
    """Stored form of a link token, code or browser id."""
    return hashlib.sha256(value.encode()).hexdigest()


def matches(value: str | None, stored: str | None) -> bool:
    """Constant-time comparison of a presented secret with its stored digest."""
    if not value or not stored:
        return False
    return hmac.compare_digest(digest(value), stored)


def _new_secrets(digests: CodeDigests, flow_id: str) -> tuple[str, str, dict[str, str]]:
    token = secrets.token_urlsafe(32)
    code = f"{secrets.randbelow(1_000_000):06d}"
    code_digest = digests.digest(CODE_PURPOSE, flow_id + code).hex()
    return token, code, {"token_digest": digest(token), "code_digest": code_digest}


def _send(
    session: Session,
    settings: Settings,
    flow_id: str,
    email: str,
    known: bool,
    secret: tuple[str, str],
    locale: str,
) -> int:
    """Queue the flow's mail (its link and code, or "you have an account" for ``known``);
    0, or while the outbox's cool-down for it runs the seconds left (nothing queued)."""
    if known:
        template = "account_exists"
        context: dict = {
            "login_link": f"{settings.issuer}/login?{urlencode({'login_hint': email})}",
            "reset_link": f"{settings.issuer}/password/forgot",
        }
    else:
        token, code = secret
        template = "verify_email"
        context = {
            "link": f"{settings.issuer}/verify-email?flow={flow_id}&token={token}",
            "code": code,
            "hours": settings.email_verification_hours,
        }
    if enqueue(session, settings, email, template, locale, context) is not None:
        return 0
    return max(cool_down_left(session, email, template), 1)


def _new_flow(
    session: Session,
    account: Account | None,
    email: str,
    settings: Settings,
    flow_id: str,
    stored: dict[str, str],
    *,
    locale: str,
    browser: str | None,
    return_to: str | None,
) -> Flow:
    now = clock.now(session)
    flow = Flow(
        id=flow_id,
        kind=KIND,
        account_id=account.id if account else None,
        state={
            "email": email,
            "locale": locale,
            "browser": digest(browser) if browser else None,
            **stored,
        },
        return_to=return_to,
        created_at=now,
        expires_at=now + timedelta(hours=settings.email_verification_hours),
    )
    session.add(flow)
    session.flush()
    return flow


def _new_code(session: Session, flow: Flow, stored: dict[str, str], settings: Settings) -> None:
    """Make ``stored`` (just mailed) the flow's link and code; the new code gets its tries."""
    flow.state = {**flow.state, **stored}
    flow.expires_at = clock.now(session) + timedelta(hours=settings.email_verification_hours)
    counters.forget(session, _code_tries(flow.id))


def _code_tries(flow_id: str) -> str:
    """The counter of tries of a flow's current code."""
    return f"verify-code:{flow_id}"


def _daily_tries(email: str) -> str:
    """The counter of code tries for one address (every flow of it, known or not)."""
    return "verify-day:" + hashlib.sha256(email.encode()).hexdigest()


def _live_flow(session: Session, account_id: int) -> Flow | None:
    """The account's unfinished, unexpired verification flow, if any."""
    return session.scalar(
        select(Flow)
        .where(
            Flow.kind == KIND,
            Flow.account_id == account_id,
            Flow.completed_at.is_(None),
            Flow.expires_at > clock.now(session),
        )
        .order_by(Flow.created_at.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Applicant:
    """A registration form that passed its checks, with its password hashed: what
    :func:`register` writes."""

    email: str
    password_hash: str


async def apply(settings: Settings, *, email: str, password: str, consent: bool) -> Applicant:
    """Check the form and hash its password (awaited, in the hasher's threads).

    Raises FormInvalid with every problem (email, password, consent). Nothing is read or
    written: the hash, the slow part of a registration, is done before :func:`register`
    opens its transaction, so no writer waits on it (SQLite lets one write at a time).
    """
    if settings.hibp_enabled:  # the check asks a web service: not on the event loop
        email, password, problems = await asyncio.to_thread(_checked, email, password, settings)
    else:
        email, password, problems = _checked(email, password, settings)
    if not consent:
        problems.append(ConsentMissing("register.consent_missing"))
    if problems:
        raise FormInvalid(problems)
    # Hashed before the address is looked up: both answers cost the same time.
    return Applicant(email, await passwords_for(settings).hash_awaited(password))


def register(
    session: Session,
    settings: Settings,
    digests: CodeDigests,
    applicant: Applicant,
    *,
    locale: str,
    browser: str | None = None,
    return_to: str | None = None,
    ip: str | None = None,
) -> Flow:
    """Register the applicant's address (or, if taken, tell its owner by mail); return the
    verification flow. Raises TooManyFlows beyond the client address's flows a minute."""
    email = applicant.email
    admission = rate_limits.admit_flow(session, ip, settings.flows_per_ip_minute)
    if not admission.admitted:
        raise TooManyFlows(admission.retry_after)
    now = clock.now(session)
    account: Account | None = None
    if session.scalar(select(Account.id).where(Account.email == email)) is None:
        account = Account(
            subject=str(uuid.uuid4()),
            email=email,
            password_hash=applicant.password_hash,
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
    flow_id = secrets.token_urlsafe(16)
    token, code, stored = _new_secrets(digests, flow_id)
    flow = _new_flow(
        session,
        account,
        email,
        settings,
        flow_id,
        stored,
        locale=locale,
        browser=browser,
        return_to=return_to,
    )
    _send(session, settings, flow_id, email, account is None, (token, code), locale)
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
    now = clock.now(session)
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
    session: Session,
    account: Account,
    settings: Settings,
    digests: CodeDigests,
    *,
    browser: str | None,
) -> Flow:
    """The logged-in citizen's verification flow: the live one (its mail sent again with a
    new code once the cool-down allows) or, if none is live, a new one."""
    live = _live_flow(session, account.id)
    flow_id = live.id if live is not None else secrets.token_urlsafe(16)
    token, code, stored = _new_secrets(digests, flow_id)
    # The cool-down is taken first: of requests racing here, one mails and the others
    # find the flow it opened (committed by then: they waited on its counter row).
    sent = not _send(
        session, settings, flow_id, account.email, False, (token, code), account.locale
    )
    if not sent and live is None:
        live = _live_flow(session, account.id)
    if live is None:
        # If its mail is still cooling down, "send again" mails this flow a code later.
        return _new_flow(
            session,
            account,
            account.email,
            settings,
            flow_id,
            stored,
            locale=account.locale,
            browser=browser,
            return_to="/account",
        )
    if sent:
        _new_code(session, live, stored, settings)
    return live


def open_flow(session: Session, flow_id: str | None) -> Flow:
    """The unfinished, unexpired verification flow ``flow_id``; raise VerificationFailed."""
    flow = session.get(Flow, flow_id, with_for_update=True) if flow_id else None
    if flows.live(session, flow, KIND) is None:
        raise VerificationFailed("verify.invalid")
    return flow


@dataclass(frozen=True)
class Verified:
    """A verified address: its account, the session it was signed in with (the browser
    that registered verified it; else None) and where that browser was going."""

    account: Account
    signed_in: OpenedSession | None
    return_to: str | None


def verify(
    session: Session,
    settings: Settings,
    digests: CodeDigests,
    flow_id: str | None,
    *,
    token: str | None = None,
    code: str | None = None,
    browser: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    replacing: str | None = None,
) -> Verified:
    """Confirm the address with the link's token or the code; raise VerificationFailed.

    Verified in the browser that registered (``browser``, its CSRF pre-session id), the
    citizen is signed in with the password they chose there (idp.accounts.signin;
    ``replacing``: that browser's session cookie token, if any). A code try is counted
    before it is compared (the caller commits even when this raises).
    """
    flow = open_flow(session, flow_id)
    state = flow.state
    if token:
        ok = matches(token, state["token_digest"])
    else:
        _reserve_try(session, flow, settings)
        typed = flow.id + (code or "").strip().replace(" ", "")
        ok = digests.matches(CODE_PURPOSE, typed, bytes.fromhex(state["code_digest"]))
    if not ok or flow.account_id is None:
        raise VerificationFailed("verify.wrong_code" if code is not None else "verify.invalid")
    now = clock.now(session)
    finished = session.execute(
        update(Flow)
        .where(Flow.id == flow.id, Flow.completed_at.is_(None))
        .values(completed_at=now)
        .execution_options(synchronize_session=False)
    )
    if finished.rowcount != 1:  # a concurrent request verified with it a moment ago
        raise VerificationFailed("verify.invalid")
    account = session.get(Account, flow.account_id)
    assert account is not None  # the flow's foreign key cascades
    if account.email_verified_at is None:
        account.email_verified_at = now
    if account.proofing_level == "none":
        account.proofing_level = "low"
    account.updated_at = now
    record(session, "account.email_verified", account_id=account.id, ip=ip)
    signed_in = None
    if matches(browser, state.get("browser")):
        signed_in = open_login_session(
            session,
            settings,
            CITIZEN,
            account.id,
            PASSWORD,
            ip=ip,
            user_agent=user_agent,
            replacing=load_session(session, replacing, CITIZEN, settings),
        )
    return Verified(account, signed_in, flow.return_to)


def _reserve_try(session: Session, flow: Flow, settings: Settings) -> None:
    """Count one code try against the code and against the address, both or neither (a
    savepoint undoes the first when the second is spent); raise VerificationFailed."""
    window = timedelta(hours=settings.email_verification_hours)
    with session.begin_nested():
        if not counters.take(session, _code_tries(flow.id), limit=CODE_TRIES, window=window):
            raise VerificationFailed("verify.too_many_tries")
        if not counters.take(
            session,
            _daily_tries(flow.state["email"]),
            limit=settings.email_code_daily_tries,
            window=DAY,
        ):
            raise VerificationFailed("verify.too_many_tries_today")


def resend(session: Session, flow_id: str | None, settings: Settings, digests: CodeDigests) -> Flow:
    """Send the mail of a verification flow again with a new link and code (after the
    cool-down; else raise ResendTooSoon)."""
    flow = open_flow(session, flow_id)
    token, code, stored = _new_secrets(digests, flow.id)
    state = flow.state
    email = state["email"]
    wait = _send(
        session, settings, flow.id, email, flow.account_id is None, (token, code), state["locale"]
    )
    if wait:
        raise ResendTooSoon("verify.resend_too_soon", seconds=wait)
    _new_code(session, flow, stored, settings)
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
