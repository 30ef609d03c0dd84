"""Back-Channel Logout 1.0: tell every client of an ended session, through an outbox.

When a login session ends (logout here or at an app, a new login replacing
it, a password reset), each client that got tokens in it and registered a
back-channel logout URI gets a logout token, and the session's grants that
were not for ``offline_access`` are revoked. When every session of an
account ends at once (a password reset), every grant of the account is
revoked, ``offline_access`` ones too, and each of their clients not told yet
gets a logout token naming the account (``sub``). This happens in one place:
:func:`listen` hooks the unit of work, so whatever ends a session through
idp.accounts.sessions, the tokens are written to the outbox in that same
transaction. Sessions that merely time out are not announced: that is
noticed only when the browser happens to come back. :func:`deliver_due` (run
by a background task of every worker) POSTs the tokens, retrying with
back-off, and records each delivery or final failure in the audit trail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import sessions
from idp.audit.events import record
from idp.db import grants
from idp.db.engine import Database
from idp.db.models import Account, BackchannelLogout, LoginSession
from idp.oidc import tokens

if TYPE_CHECKING:
    from idp.oidc.clients import RegisteredClient
    from idp.oidc.server import Provider

log = logging.getLogger("idp.oidc.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_JWT = "logout+jwt"
LOGOUT_TOKEN_SECONDS = 120
FIRST_RETRY = timedelta(seconds=5)
LEASE = timedelta(seconds=60)
BATCH = 20
TIMEOUTS = frozenset({"expired", "idle"})
# (account id, client id) told in this commit, in the unit of work's Session.info.
TOLD = "idp.backchannel_told"


def listen(db: Database, provider: Provider) -> None:
    """Announce every login session ended in a unit of work of ``db``, before it commits."""

    def before_commit(uow: Session) -> None:
        for row in sessions.take_ended(uow):
            if row.end_reason not in TIMEOUTS:
                session_ended(uow, provider, row)
        for account_id, reason in sessions.take_signed_out(uow):
            signed_out(uow, provider, account_id, reason)
        uow.info.pop(TOLD, None)

    event.listen(db.sessions, "before_commit", before_commit)


def session_ended(uow: Session, provider: Provider, login_session: LoginSession) -> int:
    """Queue logout tokens for the clients of an ended session; return how many."""
    made = grants.of_login_session(uow, login_session.id)
    account = uow.get(Account, login_session.account_id)
    now = clock.now(uow)
    queued = 0
    notified: set[str] = set()
    for grant in made:
        if grant.revoked_at is None and "offline_access" not in grant.scope.split():
            tokens.revoke_grant(uow, grant.id, "logout")
        client = provider.clients.get(grant.client_id)
        if client is None or not client.backchannel_logout_uri or client.client_id in notified:
            continue
        notified.add(client.client_id)
        _queue(uow, provider, client, account, login_session.account_id, login_session.sid, now)
        queued += 1
    return queued


def signed_out(uow: Session, provider: Provider, account_id: int, reason: str) -> int:
    """Revoke every live grant of an account signed out everywhere; tell their clients not
    told yet in this unit of work. Return how many grants were revoked."""
    now = clock.now(uow)
    live = grants.unexpired_of_account(uow, account_id, now)
    told = uow.info.get(TOLD, set())
    account = uow.get(Account, account_id)
    revoked = 0
    for grant in live:
        revoked += tokens.revoke_grant(uow, grant.id, reason)
        client = provider.clients.get(grant.client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        if (account_id, client.client_id) not in told:
            _queue(uow, provider, client, account, account_id, None, now)
    return revoked


def _queue(
    uow: Session,
    provider: Provider,
    client: RegisteredClient,
    account: Account | None,
    account_id: int,
    sid: str | None,
    now: datetime,
) -> None:
    """Put a logout token for ``client`` in the outbox: ``sid`` names the session ended,
    without it ``sub`` alone names the account (every session of it, Back-Channel Logout 2.4)."""
    issued = tokens.timestamp(now)
    claims = {
        "iss": provider.settings.issuer,
        "sub": provider.subject(account, client) if account else None,
        "aud": client.client_id,
        "iat": issued,
        "exp": issued + LOGOUT_TOKEN_SECONDS,
        "jti": tokens.new_id(),
        "sid": sid,
        "events": {EVENT: {}},
    }
    token = provider.keys.sign(
        {k: v for k, v in claims.items() if v is not None},
        client.id_token_signed_response_alg,
        LOGOUT_JWT,
    )
    uow.info.setdefault(TOLD, set()).add((account_id, client.client_id))
    uow.add(
        BackchannelLogout(
            client_id=client.client_id,
            uri=client.backchannel_logout_uri,
            logout_token=token,
            sid=sid,
            account_id=account_id,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


def _backoff(attempts: int) -> timedelta:
    return FIRST_RETRY * (4 ** (attempts - 1))


def _claim(db: Database, now: datetime) -> list[BackchannelLogout]:
    """Lease the due deliveries, so that another worker does not send them too."""
    with db.unit_of_work() as uow:
        due = uow.scalars(
            select(BackchannelLogout)
            .where(BackchannelLogout.next_attempt_at <= now)
            .order_by(BackchannelLogout.next_attempt_at)
            .limit(BATCH)
        ).all()
        claimed = []
        for row in due:
            leased = uow.execute(
                update(BackchannelLogout)
                .where(
                    BackchannelLogout.id == row.id,
                    BackchannelLogout.next_attempt_at == row.next_attempt_at,
                )
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            if leased.rowcount:
                claimed.append(row)
        return claimed


def deliver_due(db: Database, max_attempts: int, http: httpx.Client | None = None) -> int:
    """POST every due logout token once; return how many were delivered."""
    due = _claim(db, clock.now(db))
    if not due:
        return 0
    delivered = 0
    client = http or httpx.Client(timeout=5, follow_redirects=False)
    try:
        for row in due:
            error = _post(client, row)
            with db.unit_of_work() as uow:
                current = uow.get(BackchannelLogout, row.id)
                if current is None:
                    continue
                current.attempts += 1
                if error is None:
                    current.delivered_at = clock.now(db)
                    current.next_attempt_at = None
                    current.last_error = None
                    delivered += 1
                    event = "oidc.backchannel_logout_delivered"
                elif current.attempts >= max_attempts:
                    current.next_attempt_at = None
                    current.last_error = error
                    event = "oidc.backchannel_logout_failed"
                else:
                    current.next_attempt_at = clock.now(db) + _backoff(current.attempts)
                    current.last_error = error
                    continue
                record(
                    uow,
                    event,
                    account_id=current.account_id,
                    client_id=current.client_id,
                    data={"sid": current.sid, "attempts": current.attempts, "error": error},
                )
    finally:
        if http is None:
            client.close()
    return delivered


def _post(client: httpx.Client, row: BackchannelLogout) -> str | None:
    """Deliver one logout token; None on success (HTTP 200 or 204), else the reason."""
    try:
        response = client.post(
            row.uri,
            data={"logout_token": row.logout_token},
            headers={"Cache-Control": "no-store"},
        )
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}"[:500]
    if response.status_code in (200, 204):
        return None
    return f"HTTP {response.status_code}"
