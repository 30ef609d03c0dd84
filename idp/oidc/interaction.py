"""The interaction policy: when the citizen must log in, step up or consent, as data.

A :class:`Prompt` is made of named :class:`Check`s; each check looks at the
:class:`Situation` (the validated request, the SSO session, remembered
consent, the acr assessment) and says whether its prompt is needed, with a
reason code and a human description. The first prompt with a check that
applies is the interaction to run; with ``prompt=none``, or when the check is
not ``interactive`` (nothing the citizen can do here would satisfy it), its
``error`` goes to the client instead. Logging in, stepping up and consenting
during the current authorization satisfy the checks they answer, so no prompt
repeats.

Step-up follows the assurance policy's :class:`~idp.assurance.Decision` for
the request and session: a level that a step-up can reach is asked for once
(cancelling it ends the asking); an essential acr or the client's minimum that
cannot be reached, or whose step-up was cancelled, is
``unmet_authentication_requirements``; a voluntary ``acr_values`` that cannot
be reached lets the flow go on with the best level the session has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from idp.assurance import Decision
from idp.db.models import Account, LoginSession
from idp.oidc.clients import RegisteredClient
from idp.oidc.errors import (
    ConsentRequired,
    LoginRequired,
    OAuth2Error,
    UnmetAuthenticationRequirements,
)


@dataclass(frozen=True, slots=True)
class InteractionPages:
    """Where the citizen is sent for each interaction: pages of the web layer, given to the
    provider when it is built (the protocol core has no addresses of its own)."""

    login: str
    register: str  # logging in with ``prompt=create``: a new account first
    step_up: str
    consent: str
    resume: str  # the authorization's continuation, with a ``{flow_id}`` field

    def resume_at(self, flow_id: str) -> str:
        """The address at which the authorization of ``flow_id`` continues."""
        return self.resume.format(flow_id=flow_id)


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything the policy looks at for one authorization request."""

    params: dict[str, str]
    prompts: frozenset[str]
    client: RegisteredClient
    login_session: LoginSession | None
    account: Account | None
    subject: str | None  # the session account's `sub` as the client sees it
    started_at: datetime  # when this authorization began
    now: datetime
    scopes: frozenset[str]
    # What the citizen allowed this client before; read only where it can matter (a
    # third-party client, no consent given in this authorization), else empty.
    consented_scopes: frozenset[str]
    consented_in_flow: bool
    id_token_hint: dict[str, Any] | None
    acr: Decision | None  # the assurance policy's answer; None without a session
    step_up_cancelled: bool  # the citizen cancelled a step-up in this authorization

    @property
    def logged_in_during_flow(self) -> bool:
        """The citizen authenticated after this authorization began."""
        session = self.login_session
        return session is not None and session.auth_time >= self.started_at


@dataclass(frozen=True, slots=True)
class Check:
    """One reason a prompt may be needed."""

    reason: str
    description: str
    applies: Callable[[Situation], bool]
    # False: no interaction here can satisfy it, so the error goes to the client at once.
    interactive: bool = True
    # The error_description for this situation, when more can be said than ``description``.
    explain: Callable[[Situation], str] | None = None

    def message(self, situation: Situation) -> str:
        """The readable reason sent to the client as ``error_description``."""
        return self.explain(situation) if self.explain else self.description


@dataclass(frozen=True, slots=True)
class Prompt:
    """An interaction (login, step_up, consent) and the checks that call for it."""

    name: str
    error: type[OAuth2Error]  # answered instead when the client sent prompt=none
    checks: tuple[Check, ...]


def _max_age_exceeded(s: Situation) -> bool:
    max_age = s.params.get("max_age")
    if max_age is None or s.login_session is None or s.logged_in_during_flow:
        return False
    return s.now - s.login_session.auth_time > timedelta(seconds=int(max_age))


def _hint_names_someone_else(s: Situation) -> bool:
    if s.id_token_hint is None or s.logged_in_during_flow or s.subject is None:
        return False
    return s.id_token_hint.get("sub") != s.subject


LOGIN = Prompt(
    "login",
    LoginRequired,
    (
        Check(
            "prompt_create",
            "The client asked for a new account (prompt=create).",
            lambda s: "create" in s.prompts and not s.logged_in_during_flow,
        ),
        Check("no_session", "The citizen is not logged in.", lambda s: s.login_session is None),
        Check(
            "prompt_login",
            "The client asked for a fresh login (prompt=login).",
            lambda s: "login" in s.prompts and not s.logged_in_during_flow,
        ),
        Check("max_age", "The last login is older than max_age allows.", _max_age_exceeded),
        Check(
            "id_token_hint",
            "The id_token_hint names another user than the one logged in.",
            _hint_names_someone_else,
        ),
    ),
)


def _acr_out_of_reach(s: Situation) -> bool:
    """An essential acr or the client's minimum that this authorization will not reach."""
    decision = s.acr
    if decision is None or not decision.required:
        return False
    return decision.status == "unmet" or (decision.status == "step_up" and s.step_up_cancelled)


def _step_up_offered(s: Situation) -> bool:
    decision = s.acr
    return decision is not None and decision.status == "step_up" and not s.step_up_cancelled


def _why_out_of_reach(s: Situation) -> str:
    assert s.acr is not None
    if s.step_up_cancelled:
        return f"The citizen cancelled the step-up: {s.acr.description}."
    return f"{s.acr.description[:1].upper()}{s.acr.description[1:]}."


def _why_step_up(s: Situation) -> str:
    assert s.acr is not None
    return f"A step-up is needed: {s.acr.description}."


STEP_UP = Prompt(
    "step_up",
    UnmetAuthenticationRequirements,
    (
        Check(
            "acr_unmet",
            "The requested authentication level cannot be reached.",
            _acr_out_of_reach,
            interactive=False,
            explain=_why_out_of_reach,
        ),
        Check(
            "acr_values",
            "The session is below the requested authentication level.",
            _step_up_offered,
            explain=_why_step_up,
        ),
    ),
)

CONSENT = Prompt(
    "consent",
    ConsentRequired,
    (
        Check(
            "prompt_consent",
            "The client asked to show the consent page (prompt=consent).",
            lambda s: "consent" in s.prompts and not s.consented_in_flow,
        ),
        Check(
            "scopes_not_granted",
            "The citizen has not yet allowed this client these data.",
            lambda s: (
                not s.client.first_party
                and not s.consented_in_flow
                and not s.scopes <= s.consented_scopes
            ),
        ),
    ),
)

POLICY: tuple[Prompt, ...] = (LOGIN, STEP_UP, CONSENT)


def required_interaction(
    situation: Situation, policy: tuple[Prompt, ...] = POLICY
) -> tuple[Prompt, Check] | None:
    """The first prompt the situation calls for, with the check that called it; or None."""
    for prompt in policy:
        for check in prompt.checks:
            if check.applies(situation):
                return prompt, check
    return None
