"""Password reset by email: a single-use link, valid ``IDP_PASSWORD_RESET_MINUTES``.

Asking answers the same for known and unknown addresses, in words and in time:
both take the mail's cool-down, write a flow, an outbox row and an audit event;
only a known address's row is a mail that goes out (an unknown one's is withheld).
Setting the new password ends every session of the account, invalidates its
other reset links, clears its login lockout and tells the citizen by mail.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import realms, throttle
from idp.accounts.emails import normalise_email
from idp.accounts.errors import ResetInvalid, TooManyFlows
from idp.accounts.passwords import check_password, passwords_for
from idp.accounts.registration import digest, matches
from idp.accounts.sessions import end_all_sessions
from idp.audit.events import record
from idp.db import flows, rate_limits
from idp.db.models import Account, Flow
from idp.mail.outbox import enqueue
from idp.settings import Settings

KIND = "password_reset"


def request_reset(
    session: Session, settings: Settings, *, email: str, ip: str | None = None
) -> None:
    """Mail a reset link if ``email`` has an account; raise InvalidEmail if malformed,
    TooManyFlows beyond the client address's flows a minute (known and unknown alike).

    At most one link per cool-down (the outbox's): a second request within it changes nothing.
    """
    email = normalise_email(email)
    admission = rate_limits.admit_flow(session, ip, settings.flows_per_ip_minute)
    if not admission.admitted:
        raise TooManyFlows(admission.retry_after)
    account = session.scalar(select(Account).where(Account.email == email))
    usable = account is not None and account.disabled_at is None
    now = clock.now(session)
    flow_id, token = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    queued = enqueue(
        session,
        settings,
        email,
        "password_reset",
        account.locale if usable else "de",
        {
            "link": f"{settings.issuer}/password/reset?flow={flow_id}&token={token}",
            "minutes": settings.password_reset_minutes,
        },
        deliver=usable,
    )
    if queued is None:
        return
    session.add(
        Flow(
            id=flow_id,
            kind=KIND,
            account_id=account.id if usable else None,
            state={"token_digest": digest(token)},
            created_at=now,
            expires_at=now + timedelta(minutes=settings.password_reset_minutes),
        )
    )
    session.flush()
    # Unknown addresses are audited too (without an account): attempts to probe show.
    record(session, "password.reset_requested", account_id=account.id if usable else None, ip=ip)


def open_reset(session: Session, flow_id: str | None, token: str | None) -> tuple[Flow, Account]:
    """The reset flow and account a link stands for; raise ResetInvalid."""
    flow = session.get(Flow, flow_id, with_for_update=True) if flow_id else None
    if flows.live(session, flow, KIND, owned=True) is None or not matches(
        token, flow.state.get("token_digest")
    ):
        raise ResetInvalid("reset.invalid")
    account = session.get(Account, flow.account_id)
    if account is None or account.disabled_at is not None:
        raise ResetInvalid("reset.invalid")
    return flow, account


def reset_password(
    session: Session,
    settings: Settings,
    *,
    flow_id: str | None,
    token: str | None,
    password: str,
    ip: str | None = None,
) -> Account:
    """Set a new password through a reset link; raise ResetInvalid or PasswordRejected."""
    flow, account = open_reset(session, flow_id, token)
    password = check_password(password, account.email, settings)
    if not flows.claim(session, flow):  # the same link used by a concurrent request
        raise ResetInvalid("reset.invalid")
    now = clock.now(session)
    account.password_hash = passwords_for(settings).hash(password)
    account.updated_at = now
    session.execute(
        update(Flow)
        .where(Flow.kind == KIND, Flow.account_id == account.id, Flow.completed_at.is_(None))
        .values(completed_at=now)
    )
    ended = end_all_sessions(session, account.id, "password_reset")
    throttle.clear(session, throttle.email_key(realms.of_kind(account.kind), account.email))
    enqueue(
        session,
        settings,
        account.email,
        "password_changed",
        account.locale,
        {"reset_link": f"{settings.issuer}/password/forgot"},
    )
    record(session, "password.reset", account_id=account.id, ip=ip, data={"sessions_ended": ended})
    return account
