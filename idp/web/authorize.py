"""Browser-facing OpenID Connect pages: /authorize, its continuation, consent, logout, apps.

Thin: parse, call one function of idp/oidc, answer with a redirect or a page.
/authorize and /end-session accept cross-site GET and POST from relying
parties (no CSRF token: they change nothing without the citizen's own
interaction); the consent, logout confirmation and withdrawal forms are ours
and carry the CSRF token.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from litestar import Request, Response
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Redirect

from idp.db.models import Account
from idp.oidc import authorization, consent
from idp.oidc.authorization import ConsentRequest, ErrorPage, Interaction, Throttled
from idp.oidc.claims import SCOPE_CLAIMS
from idp.oidc.requests import ProtocolResponse
from idp.web.errors import PageError, TooManyRequests
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post, route
from idp.web.protocol.adapter import protocol_request, read_params, to_response
from idp.web.rendering import render
from idp.web.session import clear_session_cookie, current_session

CROSS_SITE = {"csrf": False}
END_SESSION_FIELDS = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")
SHOWN_SCOPES = ("openid", *SCOPE_CLAIMS, "identity", "offline_access")


def _answer(request: Request, outcome: Any) -> Response:
    """A redirect to the client, to an interaction page, or an error page."""
    if isinstance(outcome, ProtocolResponse):
        return to_response(outcome)
    if isinstance(outcome, Interaction):
        return Redirect(outcome.location, status_code=303)
    if isinstance(outcome, Throttled):
        raise TooManyRequests("flows.too_many", outcome.retry_after)
    assert isinstance(outcome, ErrorPage)
    return _error_page(request, outcome.error)


def _error_page(request: Request, error: OAuth2Error) -> Response:
    return render(
        request,
        "authorize_error.html",
        {"error": error.error, "description": error.description or ""},
        status=400,
        headers={"Cache-Control": "no-store"},
    )


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _run(request: Request, work: Any, *args: Any) -> Any:
    """``work(request, *args)`` where the database answers it best (Database.run_sync)."""
    return request.app.state.services.db.run_sync(partial(work, request, *args))


@route("/authorize", http_method=[HttpMethod.GET, HttpMethod.POST], opt=CROSS_SITE)
async def authorize(request: Request) -> Response:
    """The authorization endpoint (OIDC Core 3.1.2.1), GET or POST."""
    params = await read_params(request)
    return await _run(request, _authorize, params)


def _authorize(request: Request, params: list[tuple[str, str]]) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        oauth_request = protocol_request(request, params, uow, login)
        outcome = authorization.authorize(services.oidc, oauth_request)
    return _answer(request, outcome)


@get("/authorize/resume/{flow_id:str}")
async def resume(request: Request, flow_id: FromPath[str]) -> Response:
    """Continue an authorization after login, step-up or consent."""
    return await _run(request, _resume, flow_id)


def _resume(request: Request, flow_id: str) -> Response:
    services = request.app.state.services
    cancelled = request.query_params.get("step_up") == "cancelled"
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        outcome = authorization.resume(
            services.oidc, uow, flow_id, login, _ip(request), step_up_cancelled=cancelled
        )
    return _answer(request, outcome)


@get("/consent")
async def consent_page(request: Request) -> Response:
    """Which app asks for which data: allow or deny."""
    return await _run(request, _consent_page)


def _consent_page(request: Request) -> Response:
    services = request.app.state.services
    flow_id = request.query_params.get("flow", "")
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        found = authorization.consent_request(services.oidc, uow, flow_id, login)
    if not isinstance(found, ConsentRequest):
        return _answer(request, found)
    # The page is the same for every sign-in to this app with these scopes but for the
    # flow and the CSRF token: rendered once per language and reused (idp.web.rendering).
    return render(
        request,
        "consent.html",
        {
            "app": found.client_name,
            "flow_id": found.flow_id,
            "scopes": [s for s in SHOWN_SCOPES if s in found.scopes],
            "detailed": (*SCOPE_CLAIMS, "identity"),
        },
        headers={"Cache-Control": "no-store"},
        slots=("flow_id",),
    )


@post("/consent", dependencies=FORM)
async def consent_submit(request: Request, form: Form) -> Response:
    """The citizen's decision."""
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        raise PageError(400, "error.400")
    return await _run(request, _consent_submit, form, decision)


def _consent_submit(request: Request, form: Form, decision: str) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        outcome = authorization.consent_decision(
            services.oidc, uow, form.get("flow", ""), login, decision == "allow", _ip(request)
        )
    return _answer(request, outcome)


# -- RP-initiated logout -------------------------------------------------------------------


@route("/end-session", http_method=[HttpMethod.GET, HttpMethod.POST], opt=CROSS_SITE)
async def end_session(request: Request) -> Response:
    """RP-Initiated Logout 1.0: log out with a hint at once, without one after confirmation."""
    params = await read_params(request)
    return await _run(request, _end_session, params, False)


@post("/end-session/confirm", dependencies=FORM)
async def end_session_confirm(request: Request, form: Form) -> Response:
    """The citizen confirmed a logout that came without id_token_hint."""
    params = [(k, form[k]) for k in END_SESSION_FIELDS if form.get(k)]
    return await _run(request, _end_session, params, True)


def _end_session(request: Request, params: list[tuple[str, str]], confirmed: bool) -> Response:
    services = request.app.state.services
    provider = services.oidc
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        oauth_request = protocol_request(request, params, uow, login)
        try:
            validated = provider.validate_endpoint_request("end_session", oauth_request)
        except OAuth2Error as error:
            return _error_page(request, error)
        if validated.needs_confirmation and not confirmed and login is not None:
            fields = {k: v for k, v in params if k in END_SESSION_FIELDS}
            client_name = validated.client.name if validated.client else None
            return render(
                request, "end_session.html", {"fields": fields, "client_name": client_name}
            )
        outcome = provider.create_endpoint_response("end_session", validated)
    if isinstance(outcome, ProtocolResponse):
        response: Response = to_response(outcome)
    else:
        response = render(request, "logged_out.html")
    if oauth_request.session_ended:
        clear_session_cookie(response, services.settings)
    return response


# -- the citizen's apps ---------------------------------------------------------------------


@get("/account/apps")
async def apps(request: Request) -> Response:
    """The apps the citizen allowed data to or that hold a live grant, with a way to withdraw."""
    return await _run(request, _apps)


def _apps(request: Request) -> Response:
    services = request.app.state.services
    idle = timedelta(minutes=services.settings.session_idle_minutes)
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        if login is None:
            return Redirect("/login?" + urlencode({"return_to": "/account/apps"}), status_code=303)
        found = consent.apps_of(uow, login.account_id, idle)
        account = uow.get(Account, login.account_id)
    rows = []
    for item in found:
        client = services.clients.get(item.client_id)
        rows.append(
            {
                "client_id": item.client_id,
                "name": client.name if client else item.client_id,
                "scopes": [s for s in SHOWN_SCOPES if s in item.scopes],
                "granted_at": item.since,
            }
        )
    return render(request, "apps.html", {"apps": rows, "email": account.email if account else ""})


@post("/account/apps/withdraw", dependencies=FORM)
async def withdraw(request: Request, form: Form) -> Response:
    """Withdraw consent from one app and revoke its grants; its tokens stop working."""
    return await _run(request, _withdraw, form)


def _withdraw(request: Request, form: Form) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        if login is None:
            return Redirect("/login?" + urlencode({"return_to": "/account/apps"}), status_code=303)
        consent.withdraw_consent(uow, login.account_id, form.get("client_id", ""), _ip(request))
    return Redirect("/account/apps", status_code=303)


ROUTES = [
    authorize,
    resume,
    consent_page,
    consent_submit,
    end_session,
    end_session_confirm,
    apps,
    withdraw,
]
