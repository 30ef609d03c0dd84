"""The apps a citizen allowed data to, with a way to withdraw: /account/apps."""

from __future__ import annotations

from datetime import timedelta

from litestar import Request, Response
from litestar.response import Redirect

from idp.oidc import consent
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.protocol.authorize import SHOWN_SCOPES, client_ip, run
from idp.web.rendering import render
from idp.web.session import signed_in


@get("/account/apps")
async def apps(request: Request) -> Response:
    """The apps the citizen allowed data to or that hold a live grant, with a way to withdraw."""
    return await run(request, _apps)


def _apps(request: Request) -> Response:
    services = request.app.state.services
    idle = timedelta(minutes=services.settings.session_idle_minutes)
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        found = consent.apps_of(uow, who.account.id, idle)
        email = who.account.email
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
    return render(request, "apps.html", {"apps": rows, "email": email})


@post("/account/apps/withdraw", dependencies=FORM)
async def withdraw(request: Request, form: Form) -> Response:
    """Withdraw consent from one app and revoke its grants; its tokens stop working."""
    return await run(request, _withdraw, form)


def _withdraw(request: Request, form: Form) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow, "/account/apps")
        consent.withdraw_consent(uow, who.account.id, form.get("client_id", ""), client_ip(request))
    return Redirect("/account/apps", status_code=303)


ROUTES = [apps, withdraw]
