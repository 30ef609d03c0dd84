"""The consent page of the authorization flow: which app asks for which data, allow or deny."""

from __future__ import annotations

from litestar import Request, Response

from idp.oidc import authorization
from idp.oidc.authorization import ConsentRequest
from idp.oidc.claims import SCOPE_CLAIMS
from idp.web.errors import PageError
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.protocol.authorize import SHOWN_SCOPES, answer, client_ip, run
from idp.web.rendering import render
from idp.web.session import current_session


@get("/consent")
async def consent_page(request: Request) -> Response:
    """Which app asks for which data: allow or deny."""
    return await run(request, _consent_page)


def _consent_page(request: Request) -> Response:
    services = request.app.state.services
    flow_id = request.query_params.get("flow", "")
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        found = authorization.consent_request(services.oidc, uow, flow_id, login)
    if not isinstance(found, ConsentRequest):
        return answer(request, found)
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
    return await run(request, _consent_submit, form, decision)


def _consent_submit(request: Request, form: Form, decision: str) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        login = current_session(request, uow)
        outcome = authorization.consent_decision(
            services.oidc, uow, form.get("flow", ""), login, decision == "allow", client_ip(request)
        )
    return answer(request, outcome)


ROUTES = [consent_page, consent_submit]
