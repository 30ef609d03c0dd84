"""Second factors an account has: listing, binding, removal, and the guard on wrong codes.

Each factor records how it was bound when enrolled: ``high_session`` when the
session that added it was at eIDAS high, otherwise ``low_session``; identity
proofing (eID, in person) calls :func:`bind_at_proofing` with the factors the
citizen proved during the proofing itself, and marks only those ``proofing``.
The assurance policy lets only ``proofing`` and ``high_session`` factors lift a
session to high, so a stolen password cannot be turned into a high session by
adding a factor, before or after the citizen is identified.

Factors work alike for every kind of account (idp.accounts.realms); the statements
are idp.db.factors'.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from idp import assurance, clock
from idp.audit import events
from idp.db import factors as store
from idp.db.models import Account, LoginSession, SecondFactor

# Wrong codes in a row before a factor pauses, and for how long (NIST 800-63B 5.2.2).
MAX_FAILURES = 5
LOCK = timedelta(minutes=15)


class FactorError(Exception):
    """A second factor could not be enrolled or used; the message is for the citizen."""


class TooManyAttempts(FactorError):
    """Too many wrong codes: the factor refuses codes until ``until``."""

    def __init__(self, until: datetime) -> None:
        super().__init__("too many wrong codes")
        self.until = until


def factors(session: Session, account_id: int) -> list[SecondFactor]:
    """The account's second factors, oldest first."""
    return store.of_account(session, account_id)


def enrolled_bindings(session: Session, account_id: int) -> set[str]:
    """Bindings of the factors the account can use now (for the assurance policy)."""
    return store.usable_bindings(session, account_id)


def facts(
    session: Session, account: Account, login: LoginSession, now: datetime | None = None
) -> assurance.SessionFacts:
    """The assurance facts of a login session and its account."""
    return assurance.session_facts(
        account.proofing_level,
        login.methods,
        enrolled_bindings(session, account.id),
        now or clock.now(session),
    )


def binding_for(
    session: Session, account: Account, login: LoginSession, policy: assurance.Policy
) -> str:
    """How a factor enrolled now in ``login`` is bound: high_session only from a high session."""
    level = assurance.session_acr(facts(session, account, login), policy)
    return "high_session" if level == assurance.HIGH else "low_session"


def bind_at_proofing(session: Session, account_id: int, proven: Collection[int]) -> int:
    """Identity proofing happened now: bind the factors the citizen proved during it; how many.

    ``proven`` are the ids of the factors the citizen used in the proofing ceremony itself
    (the code confirmed at the counter, a factor used right after the eID in the same
    session). No other factor of the account is bound: one planted with a stolen password
    must never count for high.
    """
    bound = store.bind(session, account_id, proven, "proofing")
    events.record(
        session,
        "factor.bound",
        account_id=account_id,
        data={"factors": bound, "ids": sorted(proven)},
    )
    return bound


def used_in_session(login: LoginSession, since: datetime) -> list[int]:
    """The factors used in ``login`` at or after ``since`` (for binding at proofing)."""
    return sorted(
        {
            entry["factor"]
            for entry in login.methods
            if "factor" in entry and datetime.fromisoformat(entry["at"]) >= since
        }
    )


def remove(session: Session, account_id: int, factor_id: int) -> bool:
    """Delete one of the account's factors; False if it has no such factor."""
    factor = store.one_of_account(session, account_id, factor_id)
    if factor is None:
        return False
    session.delete(factor)
    events.record(
        session,
        "factor.removed",
        account_id=account_id,
        data={"kind": factor.kind, "binding": factor.binding},
    )
    return True


def reserve(session: Session, account_id: int, kind: str) -> list[SecondFactor]:
    """Count one attempt on each of the account's factors of ``kind`` before a code is
    checked; the factors, loaded afresh. Raises TooManyAttempts while any is paused.

    The UPDATE comes first and takes the rows until the unit of work ends (PostgreSQL's
    row locks, SQLite's writer lock), so concurrent attempts are checked one after the
    other, each on what the one before it wrote: a code is accepted once, and no more
    wrong codes are checked than :data:`MAX_FAILURES` allows.
    """
    rows, counted = store.count_attempt(session, account_id, kind, clock.now(session))
    paused = [row.locked_until for row in rows if row.id not in counted]
    if paused:
        raise TooManyAttempts(max(until for until in paused if until is not None))
    return rows


def note_failure(session: Session, factor: SecondFactor) -> None:
    """A reserved attempt's code was wrong; pause the factor after MAX_FAILURES in a row."""
    if factor.failures >= MAX_FAILURES:
        factor.locked_until = clock.now(session) + LOCK
        factor.failures = 0
        events.record(
            session, "factor.locked", account_id=factor.account_id, data={"kind": factor.kind}
        )


def note_success(session: Session, factor: SecondFactor) -> None:
    """A code was right: reset the count, remember the use."""
    factor.failures = 0
    factor.locked_until = None
    factor.last_used_at = clock.now(session)
    events.record(
        session,
        "factor.used",
        account_id=factor.account_id,
        data={"kind": factor.kind, "binding": factor.binding},
    )
