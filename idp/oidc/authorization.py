"""The authorization endpoint (OIDC Core 3.1.2) as a pipeline of named steps.

0. Every parameter a flow keeps (:data:`KEPT_PARAMETERS`) comes at most once and
   within its length; otherwise an error *page* (``invalid_request``), before
   anything is looked up or stored.
1. authlib validates the client, the redirect URI (exact match), the response
   type, scopes, nonce and the PKCE challenge's form. An unknown client or a
   redirect URI that does not match is an error *page*: nothing is redirected
   to an unvalidated URI.
2. Our :data:`CHECKS` run in order; each raises the spec's error, which from
   here on is redirected to the client.
3. The interaction policy (idp/oidc/interaction.py) decides whether the citizen
   must log in, step up or consent. The validated request's parameters of
   :data:`KEPT_PARAMETERS` (no others) are kept as a :class:`~idp.db.models.Flow`
   while they do, and it continues at the resume page (:class:`InteractionPages`:
   the web layer's addresses, like the login, step-up and consent pages). A client
   address opens at most ``IDP_FLOWS_PER_IP_MINUTE`` flows a minute; beyond
   that the answer is :class:`Throttled`.
4. Otherwise authlib issues the code. Every redirect to the client carries
   ``iss`` (RFC 9207).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from sqlalchemy.orm import Session

from idp import assurance, clock
from idp.accounts import factors
from idp.audit.events import record
from idp.db import consents, flows, rate_limits
from idp.db.loads import ACCOUNT, FLOW
from idp.db.models import Account, Flow, LoginSession
from idp.oidc import consent
from idp.oidc.claims import InvalidClaimsParameter, parse_claims_parameter
from idp.oidc.clients import RegisteredClient
from idp.oidc.errors import (
    AccessDenied,
    InvalidRequest,
    OAuth2Error,
    RequestNotSupported,
    RequestUriNotSupported,
)
from idp.oidc.grants import Authenticated
from idp.oidc.interaction import InteractionPages, Situation, required_interaction
from idp.oidc.requests import ProtocolRequest, ProtocolResponse
from idp.oidc.server import Provider

FLOW_KIND = "authorization"
FLOW_LIFETIME = timedelta(minutes=30)
PROMPT_VALUES = frozenset({"none", "login", "consent", "create", "select_account"})
LOCALES = ("de", "en")

# The authorization request parameters a flow keeps (OIDC Core 3.1.2.1, RFC 7636), each
# with the longest value accepted: a flow is stored for every anonymous request, so what
# one may hold is bounded (about 19 KB). Other parameters are ignored (RFC 6749 3.1).
KEPT_PARAMETERS: dict[str, int] = {
    "client_id": 255,
    "redirect_uri": 2000,
    "response_type": 64,
    "response_mode": 32,
    "scope": 1000,
    "state": 1024,
    "nonce": 512,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "prompt": 64,
    "max_age": 16,
    "acr_values": 1000,
    "claims": 4096,
    "ui_locales": 256,
    "login_hint": 320,
    "id_token_hint": 8192,
}


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """An error shown to the citizen, never redirected (unknown client, bad redirect URI...)."""

    error: OAuth2Error


@dataclass(frozen=True, slots=True)
class Interaction:
    """The citizen must do something first; the browser goes to ``location``."""

    prompt: str  # login | step_up | consent
    reason: str
    flow_id: str
    location: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """Too many flows opened from the client's address: try again in ``retry_after`` s."""

    retry_after: int


class FlowLimitReached(Exception):
    """Raised where a flow would be opened beyond the client address's limit."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many authorization flows from one address; retry in {retry_after}s")
        self.retry_after = retry_after


Outcome = ProtocolResponse | ErrorPage | Interaction | Throttled


# -- step 0: what a flow may keep ------------------------------------------------------------


def check_parameter_bounds(provider: Provider, request: ProtocolRequest) -> None:
    """Each kept parameter at most once (RFC 6749 3.1) and within its length, before
    anything is looked up or stored.

    An oversized ``client_id``, ``redirect_uri`` or ``state`` is answered as a page (a
    redirect would echo it); any other, once those are sound, as an error redirected to
    the client's registered redirect URI (RFC 6749 4.1.2.1).
    """
    names = sorted(request.payload.datalist, key=lambda name: name not in REDIRECT_PARAMETERS)
    for name in names:
        values = request.payload.datalist[name]
        longest = KEPT_PARAMETERS.get(name)
        if longest is None:
            continue
        if len(values) > 1:
            error = InvalidRequest(f"The parameter '{name}' is repeated.")
        elif len(values[0]) > longest:
            error = InvalidRequest(f"The parameter '{name}' is longer than {longest} characters.")
        else:
            continue
        if name not in REDIRECT_PARAMETERS:
            error.redirect_uri = _registered_redirect_uri(provider, request)
            error.state = request.payload.state
        raise error


# -- step 2: the checks after authlib's validation, in order ---------------------------------


def check_request_object(provider: Provider, request: ProtocolRequest) -> None:
    """Request objects are not supported (OIDC Core 6): say so with the spec's codes."""
    data = request.payload.data
    if "request" in data:
        raise RequestNotSupported("Request objects are not supported.")
    if "request_uri" in data:
        raise RequestUriNotSupported("The 'request_uri' parameter is not supported.")


def check_response_mode(provider: Provider, request: ProtocolRequest) -> None:
    """Only the code flow's default response mode, ``query``."""
    mode = request.payload.data.get("response_mode")
    if mode is not None and mode != "query":
        raise InvalidRequest("Only response_mode=query is supported.")


def check_pkce(provider: Provider, request: ProtocolRequest) -> None:
    """PKCE is required of public clients, and of every client with IDP_REQUIRE_PKCE."""
    if request.payload.data.get("code_challenge"):
        return
    if request.client.public or provider.settings.require_pkce:
        raise InvalidRequest("PKCE is required: send code_challenge with S256.")


def check_prompt(provider: Provider, request: ProtocolRequest) -> None:
    """``none`` stands alone; unknown values are ignored."""
    prompts = set(request.payload.data.get("prompt", "").split())
    if "none" in prompts and len(prompts & PROMPT_VALUES) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values.")


def check_max_age(provider: Provider, request: ProtocolRequest) -> None:
    """``max_age`` is a number of seconds."""
    max_age = request.payload.data.get("max_age")
    if max_age is not None and not (max_age.isdigit() and len(max_age) <= 10):
        raise InvalidRequest("max_age must be a non-negative whole number of seconds.")


def check_claims(provider: Provider, request: ProtocolRequest) -> None:
    """The ``claims`` parameter is well-formed (OIDC Core 5.5)."""
    try:
        parse_claims_parameter(request.payload.data.get("claims"))
    except InvalidClaimsParameter as exc:
        raise InvalidRequest(str(exc)) from None


def check_id_token_hint(provider: Provider, request: ProtocolRequest) -> None:
    """An ``id_token_hint`` must be an ID token this service issued (expired is fine)."""
    hint = request.payload.data.get("id_token_hint")
    if not hint:
        return
    claims = provider.tokens.verify(hint, "JWT", allow_expired=True)
    if claims is None:
        raise InvalidRequest("The id_token_hint is not an ID token issued here.")
    request.id_token_hint = claims


CHECKS: tuple[Callable[[Provider, ProtocolRequest], None], ...] = (
    check_request_object,
    check_response_mode,
    check_pkce,
    check_prompt,
    check_max_age,
    check_claims,
    check_id_token_hint,
)


# The parameters an error redirect is built from: while one is in doubt, errors are a page.
REDIRECT_PARAMETERS = ("client_id", "redirect_uri", "state")


def check_parameters(provider: Provider, request: ProtocolRequest) -> None:
    """Each parameter at most once and of its syntax (idp/oidc/requests.py), before authlib
    reads them: an error page while the redirect's own parameters are in doubt, else an
    error redirected to the client's registered redirect URI (RFC 6749 4.1.2.1)."""
    error = request.parameter_error(REDIRECT_PARAMETERS)
    if error is not None:
        raise error
    error = request.parameter_error()
    if error is not None:
        error.redirect_uri = _registered_redirect_uri(provider, request)
        error.state = request.payload.state
        raise error


def _registered_redirect_uri(provider: Provider, request: ProtocolRequest) -> str | None:
    """The request's redirect URI if its client registered it, as authlib decides it."""
    client = provider.query_client(request.payload.client_id)
    redirect_uri = request.payload.redirect_uri
    if client is None or not redirect_uri or not client.check_redirect_uri(redirect_uri):
        return None
    return redirect_uri


def validate(provider: Provider, request: ProtocolRequest) -> Any:
    """Steps 0 to 2: the parameters' bounds, authlib's validation, then :data:`CHECKS`;
    return authlib's grant."""
    request.id_token_hint = None
    check_parameters(provider, request)
    check_parameter_bounds(provider, request)
    grant = provider.get_consent_grant(request)
    for check in CHECKS:
        try:
            check(provider, request)
        except OAuth2Error as error:
            error.redirect_uri = grant.redirect_uri
            error.state = request.payload.state
            raise
    return grant


# -- the endpoint and its continuation -------------------------------------------------------


def authorize(provider: Provider, request: ProtocolRequest) -> Outcome:
    """GET or POST /authorize."""
    try:
        grant = validate(provider, request)
        return _decide(provider, request, grant, None)
    except OAuth2Error as error:
        return _error(provider, error)
    except FlowLimitReached as refused:
        return Throttled(refused.retry_after)


def resume(
    provider: Provider,
    uow: Session,
    flow_id: str,
    login_session: LoginSession | None,
    ip: str | None = None,
    *,
    step_up_cancelled: bool = False,
) -> Outcome:
    """The resume page of ``flow_id``: continue after login, step-up or consent."""
    flow = open_flow(uow, flow_id)
    if flow is None:
        return ErrorPage(InvalidRequest("This sign-in has expired or is finished."))
    if step_up_cancelled:
        flow.state = {**flow.state, "step_up_cancelled": True}
    request = flow_request(provider, uow, flow, login_session, ip)
    try:
        grant = validate(provider, request)
        return _decide(provider, request, grant, flow)
    except OAuth2Error as error:
        return _error(provider, error)


def open_flow(uow: Session, flow_id: str) -> Flow | None:
    """A live, unfinished authorization flow."""
    flow = FLOW.get(uow, id=flow_id) if flow_id and len(flow_id) <= 64 else None
    return flows.live(uow, flow, FLOW_KIND)


def flow_request(
    provider: Provider,
    uow: Session,
    flow: Flow,
    login_session: LoginSession | None,
    ip: str | None,
) -> ProtocolRequest:
    """The stored authorization request, as authlib's request again."""
    params = [(key, value) for key, value in flow.state["params"]]
    return ProtocolRequest(
        "GET",
        f"{provider.settings.issuer}/authorize",
        params,
        {},
        uow,
        ip=ip,
        login_session=login_session,
    )


def _decide(provider: Provider, request: ProtocolRequest, grant: Any, flow: Flow | None) -> Outcome:
    """Step 3 and 4: run the interaction policy, then issue the code."""
    uow = request.uow
    params = request.payload.data
    client = request.client
    login_session = request.login_session
    now = clock.now(uow)
    scopes = frozenset((request.scope or "").split())
    prompts = frozenset(params.get("prompt", "").split())
    consented_in_flow = bool(flow and flow.state.get("consented"))
    # Only reads here: the flow's and the session's pending changes are written once, with
    # the rest of the request's, when it commits.
    with uow.no_autoflush:
        account = ACCOUNT.get(uow, id=login_session.account_id) if login_session else None
        if account is not None and account.disabled_at is not None:
            login_session, account = None, None
        decision, amr, wanted_acr = assess_acr(
            provider, uow, params, client, login_session, account
        )
        consented_scopes = (
            consents.scopes_of(uow, account.id, client.client_id)
            if account is not None and not client.first_party and not consented_in_flow
            else frozenset()
        )
    situation = Situation(
        params=params,
        prompts=prompts,
        client=client,
        login_session=login_session,
        account=account,
        subject=provider.subject(account, client) if account else None,
        started_at=flow.created_at if flow else now,
        now=now,
        scopes=scopes,
        consented_scopes=consented_scopes,
        consented_in_flow=consented_in_flow,
        id_token_hint=request.id_token_hint,
        acr=decision,
        step_up_cancelled=bool(flow and flow.state.get("step_up_cancelled")),
    )
    found = required_interaction(situation)
    if found is not None:
        prompt, check = found
        if "none" in situation.prompts or not check.interactive:
            raise prompt.error(
                check.message(situation), redirect_uri=grant.redirect_uri, state=params.get("state")
            )
        flow_id = flow.id if flow is not None else start_flow(provider, request)
        location = _interaction_location(
            provider.pages, prompt.name, check.reason, flow_id, params, wanted_acr
        )
        return Interaction(prompt.name, check.reason, flow_id, location)
    assert login_session is not None and account is not None
    acr = decision.acr if decision is not None else None
    user = Authenticated(account, login_session, login_session.auth_time, acr, amr)
    response = provider.create_authorization_response(request, grant_user=user, grant=grant)
    if flow is not None:
        flow.completed_at = now
        flow.account_id = account.id
    return _to_client(provider, response)


def assess_acr(
    provider: Provider,
    uow: Session,
    params: dict[str, str],
    client: RegisteredClient,
    login_session: LoginSession | None,
    account: Account | None,
) -> tuple[assurance.Decision | None, list[str], str | None]:
    """The step-up slot: the assurance policy's decision for this request and session.

    Returns (decision, amr, the acr level a step-up aims for); no decision without a session.
    """
    if login_session is None or account is None:
        return None, [], None
    requirement = assurance.requested_acr(
        params.get("acr_values"),
        parse_claims_parameter(params.get("claims")),
        (client.default_acr,) if client.default_acr else (),
        client.minimum_acr,
    )
    facts = factors.facts(uow, account, login_session)
    decision = assurance.evaluate(requirement, facts, provider.assurance_policy)
    wanted = assurance.LEVELS[requirement.target - 1] if requirement.target else None
    return decision, assurance.amr(facts), wanted


def start_flow(provider: Provider, request: ProtocolRequest) -> str:
    """Keep the validated request while the citizen interacts; return the flow's id.

    Raise FlowLimitReached beyond ``IDP_FLOWS_PER_IP_MINUTE`` flows from the request's
    client address.
    """
    uow = request.uow
    admission = rate_limits.admit_flow(uow, request.ip, provider.settings.flows_per_ip_minute)
    if not admission.admitted:
        raise FlowLimitReached(admission.retry_after)
    now = clock.now(uow)
    data = request.payload.data
    params = [[key, data[key]] for key in KEPT_PARAMETERS if key in data]
    flow_id = secrets.token_urlsafe(16)
    flows.start(
        uow,
        flow_id,
        kind=FLOW_KIND,
        state={"params": params, "consented": False},
        return_to=provider.pages.resume_at(flow_id),
        now=now,
        expires_at=now + FLOW_LIFETIME,
    )
    return flow_id


def _locale(params: dict[str, str]) -> str | None:
    for tag in params.get("ui_locales", "").split():
        language = tag.split("-")[0].lower()
        if language in LOCALES:
            return language
    return None


def _interaction_location(
    pages: InteractionPages,
    prompt: str,
    reason: str,
    flow_id: str,
    params: dict[str, str],
    wanted_acr: str | None,
) -> str:
    resume_path = pages.resume_at(flow_id)
    if prompt == "consent":
        return f"{pages.consent}?{urlencode({'flow': flow_id})}"
    if prompt == "step_up":
        query = urlencode({"return_to": resume_path, "acr": wanted_acr or ""})
        return f"{pages.step_up}?{query}"
    query = {"return_to": resume_path, "flow": flow_id}
    if params.get("login_hint"):
        query["login_hint"] = params["login_hint"]
    if locale := _locale(params):
        query["lang"] = locale
    page = pages.register if reason == "prompt_create" else pages.login
    return f"{page}?{urlencode(query)}"


def _error(provider: Provider, error: OAuth2Error) -> Outcome:
    """An error redirected to the validated redirect URI, else shown as a page."""
    if error.redirect_uri:
        return _to_client(provider, provider.handle_response(*error()))
    return ErrorPage(error)


def _to_client(provider: Provider, response: ProtocolResponse) -> ProtocolResponse:
    """Add ``iss`` to a redirect to the client (RFC 9207)."""
    location = response.location
    if location is not None:
        response.headers = [(k, v) for k, v in response.headers if k.lower() != "location"] + [
            ("Location", add_params_to_uri(location, [("iss", provider.settings.issuer)]))
        ]
    return response


# -- consent ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """What the consent page shows: which app asks for which data."""

    flow_id: str
    client_name: str
    client_id: str
    scopes: tuple[str, ...]


def consent_request(
    provider: Provider, uow: Session, flow_id: str, login_session: LoginSession | None
) -> ConsentRequest | Outcome:
    """The consent page's content, or where to go instead (resume when not logged in)."""
    flow = open_flow(uow, flow_id)
    if flow is None:
        return ErrorPage(InvalidRequest("This sign-in has expired or is finished."))
    if login_session is None:
        return resume(provider, uow, flow_id, login_session)
    request = flow_request(provider, uow, flow, login_session, None)
    try:
        validate(provider, request)
    except OAuth2Error as error:
        return _error(provider, error)
    flow.account_id = login_session.account_id
    scopes = tuple(s for s in (request.scope or "").split())
    return ConsentRequest(flow.id, request.client.name, request.client.client_id, scopes)


def consent_decision(
    provider: Provider,
    uow: Session,
    flow_id: str,
    login_session: LoginSession | None,
    allow: bool,
    ip: str | None = None,
) -> Outcome:
    """The citizen allowed or denied: remember it and continue, or tell the client."""
    flow = open_flow(uow, flow_id)
    if flow is None:
        return ErrorPage(InvalidRequest("This sign-in has expired or is finished."))
    if login_session is None or flow.account_id != login_session.account_id:
        # The page was shown to someone else (or never): start the interaction again.
        return resume(provider, uow, flow_id, login_session, ip)
    request = flow_request(provider, uow, flow, login_session, ip)
    try:
        grant = validate(provider, request)
    except OAuth2Error as error:
        return _error(provider, error)
    client_id = request.client.client_id
    if not allow:
        flow.completed_at = clock.now(uow)
        record(uow, "oidc.consent_denied", account_id=flow.account_id, client_id=client_id, ip=ip)
        denied = AccessDenied(
            "The citizen did not allow access.",
            redirect_uri=grant.redirect_uri,
            state=request.payload.state,
        )
        return _error(provider, denied)
    consent.give_consent(
        uow, login_session.account_id, client_id, frozenset((request.scope or "").split()), ip
    )
    flow.state = {**flow.state, "consented": True}
    # Go on as the flow's continuation would, with the request just validated: the same
    # stored parameters, the same session (no second pass through authlib's validation).
    try:
        return _decide(provider, request, grant, flow)
    except OAuth2Error as error:
        return _error(provider, error)
