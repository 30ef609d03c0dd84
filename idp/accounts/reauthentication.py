"""Fresh re-authentication before the factors that protect an account change.

Adding a second factor, making new recovery codes and removing a factor need,
in this session and within ``IDP_REAUTH_MINUTES``: one of the account's second
factors used, or, while the account has no usable factor, the password. So a
stolen session cookie, or a password-only session left open, cannot change
what protects the account. Every change is mailed to the citizen
(``factor_changed``), so one they did not make does not go unnoticed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import factors, sessions
from idp.accounts.authenticators import REGISTRY, Keys
from idp.audit import events
from idp.db.models import Account, LoginSession, SecondFactor
from idp.mail.outbox import enqueue
from idp.settings import Settings

FACTOR = "factor"
PASSWORD = "password"  # noqa: S105 - a method's name, not a secret


def needed(
    session: Session, account: Account, login: LoginSession, settings: Settings
) -> str | None:
    """What the citizen must confirm before changing a factor now: :data:`FACTOR` (one of
    their second factors), :data:`PASSWORD` (they have none), or None (recent enough)."""
    since = clock.now(session) - timedelta(minutes=settings.reauth_minutes)
    has_factor = bool(factors.enrolled_bindings(session, account.id))
    for entry in login.methods:
        if datetime.fromisoformat(entry["at"]) < since:
            continue
        if "factor" in entry or (not has_factor and entry["method"] == "pwd"):
            return None
    return FACTOR if has_factor else PASSWORD


def confirm_factor(
    session: Session,
    account: Account,
    login: LoginSession,
    method: str,
    form: dict[str, str],
    keys: Keys,
) -> SecondFactor:
    """Check one of the account's factors (any binding) and note its use in the session;
    raise FactorError if wrong."""
    factor = REGISTRY.check(session, account, method, form, keys)
    sessions.add_method(login, factor.amr, binding=factor.binding, factor=factor.id)
    events.record(
        session,
        "session.reauthenticated",
        account_id=account.id,
        data={"sid": login.sid, "amr": factor.amr},
    )
    return factor


def note_password(session: Session, login: LoginSession, *, ip: str | None) -> None:
    """The password was confirmed (by idp.accounts.login, throttled as a login): note it in
    the session, and audit the re-authentication."""
    sessions.add_method(login, "pwd")
    events.record(
        session,
        "session.reauthenticated",
        account_id=login.account_id,
        ip=ip,
        data={"amr": ["pwd"]},
    )


def notify(session: Session, settings: Settings, account: Account, change: str, kind: str) -> None:
    """Mail the citizen that a factor changed (``change``: added, removed, renewed)."""
    enqueue(
        session,
        settings,
        account.email,
        "factor_changed",
        account.locale,
        {"change": change, "kind": kind, "security_link": f"{settings.issuer}/account/security"},
    )
