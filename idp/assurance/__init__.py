"""Assurance: which eIDAS level (``acr``) a session reaches, and what a request needs.

The policy itself is pure and lives in :mod:`idp.assurance.policy`; this
package exports its small API and builds the configured :class:`Policy`.

Use from the authorization flow::

    policy = load_policy(settings)                        # once, at start-up
    requirement = requested_acr(request.acr_values, request.claims,
                                client.default_acr_values, client.minimum_acr)
    facts = session_facts(account.proofing_level, login_session.methods,
                          enrolled_bindings, clock.now(session))
    decision = evaluate(requirement, facts, policy)
    # decision.status == "met"     -> ID token acr = decision.acr, amr = amr(facts)
    # decision.status == "step_up" -> /step-up?return_to=...&acr=<wanted>
    # decision.status == "unmet"   -> go on with decision.acr, unless decision.required
    #     (error=unmet_authentication_requirements, error_description=decision.description)

idp/oidc/interaction.py turns decisions into the ``step_up`` prompt's checks
(cancelled step-ups, ``prompt=none``).
"""

from __future__ import annotations

from datetime import timedelta

from idp.assurance.policy import (
    ALIASES,
    HIGH,
    LEVELS,
    LOW,
    SUBSTANTIAL,
    Authentication,
    Decision,
    Policy,
    Requirement,
    Rule,
    SessionFacts,
    amr,
    canonical,
    evaluate,
    rank,
    refreshed_acr,
    requested_acr,
    session_acr,
    session_facts,
    useful_bindings,
)
from idp.settings import Settings

__all__ = [
    "ALIASES",
    "HIGH",
    "LEVELS",
    "LOW",
    "SUBSTANTIAL",
    "Authentication",
    "Decision",
    "Policy",
    "Requirement",
    "Rule",
    "SessionFacts",
    "amr",
    "canonical",
    "evaluate",
    "load_policy",
    "rank",
    "refreshed_acr",
    "requested_acr",
    "session_acr",
    "session_facts",
    "useful_bindings",
]


def _minutes(value: int) -> timedelta | None:
    return timedelta(minutes=value) if value else None


def load_policy(settings: Settings) -> Policy:
    """The policy configured by ``settings``: the default table or IDP_ACR_POLICY_FILE's."""
    max_age = {
        LOW: None,
        SUBSTANTIAL: _minutes(settings.acr_substantial_max_age_minutes),
        HIGH: _minutes(settings.acr_high_max_age_minutes),
    }
    if settings.acr_policy_file is None:
        return Policy(max_age=max_age)
    return Policy.from_json(settings.acr_policy_file.read_text(encoding="utf-8"), max_age)
