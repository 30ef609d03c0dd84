"""Browser-facing protocol steps: /authorize, its continuation, RP-initiated logout.

Thin: parse, call one function of idp/oidc, answer with a redirect or a page.
/authorize and /end-session accept cross-site GET and POST from relying
parties (no CSRF token: they change nothing without the citizen's own
interaction); the logout confirmation form is ours and carries the CSRF token.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from authlib.oauth2 import OAuth2Error
from litestar import Request, Response
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Redirect

from idp.oidc import authorization
from idp.oidc.authorization import ErrorPage, Interaction, Throttled
from idp.oidc.claims import SCOPE_CLAIMS
from idp.oidc.requests import ProtocolResponse
from idp.web.errors import TooManyRequests
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post, route
from idp.web.protocol.adapter import protocol_request, read_params, to_response
from idp.web.rendering import render
from idp.web.session import clear_session_cookie, current_session

CROSS_SITE = {"csrf": False}
END_SESSION_FIELDS = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")
SHOWN_SCOPES = ("openid", *SCOPE_CLAIMS, "identity", "offline_access")


def answer(request: Request, outcome: Any) -> Response:
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


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def run(request: Request, work: Any, *args: Any) -> Any:
    """``work(request, *args)`` where the database answers it best (Database.run_sync)."""
    return request.app.state.services.db.run_sync(partial(work, request, *args))


@route("/authorize", http_method=[HttpMethod.GET, HttpMethod.POST], opt=CROSS_SITE)
async def authorize(request: Request) -> Response:
    """The authorization endpoint (OIDC Core 3.1.2.1), GET or POST."""
    params = await read_params(request)
    return await run(request, _authorize, params)


def _authorize(request: Request, params: list[tuple[str, str]]) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        oauth_request = protocol_request(request, params, uow, login)
        outcome = authorization.authorize(services.oidc, oauth_request)
    return answer(request, outcome)


@get("/authorize/resume/{flow_id:str}")
async def resume(request: Request, flow_id: FromPath[str]) -> Response:
    """Continue an authorization after login, step-up or consent."""
    return await run(request, _resume, flow_id)


def _resume(request: Request, flow_id: str) -> Response:
    services = request.app.state.services
    cancelled = request.query_params.get("step_up") == "cancelled"
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        outcome = authorization.resume(
            services.oidc, uow, flow_id, login, client_ip(request), step_up_cancelled=cancelled
        )
    return answer(request, outcome)


# -- RP-initiated logout -------------------------------------------------------------------


@route("/end-session", http_method=[HttpMethod.GET, HttpMethod.POST], opt=CROSS_SITE)
async def end_session(request: Request) -> Response:
    """RP-Initiated Logout 1.0: log out with a hint at once, without one after confirmation."""
    params = await read_params(request)
    return await run(request, _end_session, params, False)


@post("/end-session/confirm", dependencies=FORM)
async def end_session_confirm(request: Request, form: Form) -> Response:
    """The citizen confirmed a logout that came without id_token_hint."""
    params = [(k, form[k]) for k in END_SESSION_FIELDS if form.get(k)]
    return await run(request, _end_session, params, True)


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


ROUTES = [authorize, resume, end_session, end_session_confirm]
