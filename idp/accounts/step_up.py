"""Step-up: raise a login session to a wanted acr with exactly the factor that is missing.

:func:`offer` says what the step-up page asks for (which of the citizen's
authenticators, from idp.accounts.authenticators, count for the wanted level, or
that identification by eID or in person is the way); :func:`prove` checks one
answer and records the method in the session (``sessions.add_method`` with the
factor's amr and binding).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp import assurance
from idp.accounts import factors, sessions
from idp.accounts.authenticators import REGISTRY, Authenticator, Keys
from idp.accounts.factors import FactorError
from idp.audit import events
from idp.db.models import Account, LoginSession, SecondFactor


@dataclass(frozen=True)
class Offer:
    """What the step-up page shows for one session and wanted acr: the decision, and the
    account's authenticators that would meet it (none when identification is missing)."""

    decision: assurance.Decision
    methods: tuple[Authenticator, ...] = ()


def offer(
    session: Session, account: Account, login: LoginSession, acr: str, policy: assurance.Policy
) -> Offer:
    """The decision for ``acr`` and which of the account's factors would meet it."""
    facts = factors.facts(session, account, login)
    requirement = assurance.Requirement((acr,), essential=True)
    decision = assurance.evaluate(requirement, facts, policy)
    if decision.status != "step_up" or "second_factor" not in decision.missing:
        return Offer(decision)
    useful = assurance.useful_bindings(acr, facts, policy)
    return Offer(decision, REGISTRY.offered(session, account.id, frozenset(useful)))


def prove(
    session: Session,
    account: Account,
    login: LoginSession,
    acr: str,
    method: str,
    form: dict[str, str],
    keys: Keys,
    policy: assurance.Policy,
) -> SecondFactor:
    """Check one step-up answer (``method``: a registered authenticator's name) and record
    it in the session; raise FactorError if wrong."""
    factor = REGISTRY.check(session, account, method, form, keys)
    facts = factors.facts(session, account, login)
    if factor.binding not in assurance.useful_bindings(acr, facts, policy):
        raise FactorError("this factor does not count for the requested level")
    sessions.add_method(login, factor.amr, binding=factor.binding, factor=factor.id)
    events.record(
        session,
        "session.step_up",
        account_id=account.id,
        data={"sid": login.sid, "amr": factor.amr, "binding": factor.binding, "acr": acr},
    )
    return factor
