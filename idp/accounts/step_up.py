"""Step-up: raise a login session to a wanted acr with exactly the factor that is missing.

:func:`offer` says what the step-up page asks for (which of the citizen's
factors count for the wanted level, or that identification by eID or in
person is the way); :func:`prove` checks one answer and records the method in
the session (``sessions.add_method`` with the factor's amr and binding).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp import assurance
from idp.accounts import factors, passkeys, recovery_codes, sessions, totp
from idp.accounts.factors import FactorError
from idp.audit import events
from idp.db import factors as store
from idp.db.models import Account, LoginSession, SecondFactor
from idp.keys.secret import CodeDigests
from idp.keys.secretbox import SecretBox


@dataclass(frozen=True)
class Offer:
    """What the step-up page shows for one session and wanted acr."""

    decision: assurance.Decision
    totp: bool = False
    passkey: bool = False
    recovery: bool = False


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
    kinds = store.kinds_bound(session, account.id, useful)
    has_codes = "recovery_codes" in kinds and _usable_codes(session, account, useful)
    return Offer(decision, "totp" in kinds, "passkey" in kinds, has_codes)


def _usable_codes(session: Session, account: Account, useful: frozenset[str]) -> bool:
    return (
        store.recovery_codes_binding(session, account.id) in useful
        and recovery_codes.remaining(session, account.id) > 0
    )


def check_answer(
    session: Session,
    account: Account,
    method: str,
    form: dict[str, str],
    box: SecretBox,
    issuer: str,
    digests: CodeDigests,
) -> SecondFactor:
    """The factor that accepts one answer (``method``: totp, recovery, passkey), used now;
    raise FactorError if none does (TooManyAttempts while paused)."""
    if method == "totp":
        factor = totp.verify(session, account, form.get("code", ""), box)
    elif method == "recovery":
        factor = recovery_codes.use(session, account, form.get("code", ""), digests)
    elif method == "passkey":
        factor = passkeys.finish_authentication(
            session, account, form.get("flow", ""), form.get("credential", ""), issuer
        )
    else:
        raise FactorError("unknown method")
    if factor is None:
        raise FactorError("wrong code")
    return factor


def prove(
    session: Session,
    account: Account,
    login: LoginSession,
    acr: str,
    method: str,
    form: dict[str, str],
    box: SecretBox,
    issuer: str,
    policy: assurance.Policy,
    digests: CodeDigests,
) -> SecondFactor:
    """Check one step-up answer and record it in the session; raise FactorError if wrong."""
    factor = check_answer(session, account, method, form, box, issuer, digests)
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
