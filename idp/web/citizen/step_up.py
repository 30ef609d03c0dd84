"""The step-up page: GET/POST /step-up?return_to=...&acr=...

It asks for exactly what the session lacks for ``acr``: one of the citizen's
authenticators that counts for that level (idp.accounts.authenticators), or,
when the account is not proofed or has no such factor, explains
the ways to an identified account (eID, in person). On success the method is
added to the session and the browser goes to ``return_to``. "Cancel" goes to
``return_to`` with ``step_up=cancelled`` added to its query, so the
authorization flow can answer ``unmet_authentication_requirements``.
"""

from __future__ import annotations

from litestar import Request, Response
from litestar.response import Redirect
from sqlalchemy.orm import Session

from idp import assurance
from idp.accounts import step_up
from idp.accounts.authenticators import REGISTRY
from idp.accounts.factors import FactorError, TooManyAttempts
from idp.db.models import Account, LoginSession
from idp.web import i18n
from idp.web.errors import PageError
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.redirects import safe_return_to
from idp.web.rendering import language, render
from idp.web.session import signed_in

CANCEL_MARKER = "step_up=cancelled"


def cancel_url(return_to: str) -> str:
    """``return_to`` with the cancel marker added to its query."""
    return f"{return_to}{'&' if '?' in return_to else '?'}{CANCEL_MARKER}"


def _wanted(acr: str | None) -> str:
    if not acr or assurance.canonical(acr) is None:
        raise PageError(400, "step_up.unknown_acr")
    return acr


def _page(
    request: Request,
    uow: Session,
    account: Account,
    login: LoginSession,
    acr: str,
    return_to: str,
    errors: dict[str, str] | None = None,
) -> Response:
    services = request.app.state.services
    offer = step_up.offer(uow, account, login, acr, services.assurance_policy)
    if offer.decision.status == "met":
        return Redirect(return_to, status_code=303)
    prepared = REGISTRY.prepared(uow, account, offer.methods, services.authenticator_keys)
    level = assurance.canonical(acr) or acr
    return render(
        request,
        "step_up.html",
        {
            "offer": offer,
            "acr": acr,
            "level": level.rsplit("/", 1)[-1],
            "proofed": account.proofing_level in ("substantial", "high"),
            "return_to": return_to,
            "cancel_url": cancel_url(return_to),
            "errors": errors or {},
            **prepared,
        },
        status=400 if errors else 200,
    )


@get("/step-up", sync_to_thread=True)
def step_up_page(request: Request) -> Response:
    """Ask for what the session lacks for ``acr``, or go on if nothing is."""
    wanted = _wanted(request.query_params.get("acr"))
    target = safe_return_to(request.query_params.get("return_to"))
    with request.app.state.services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        return _page(request, uow, who.account, who.login, wanted, target)


@post("/step-up", sync_to_thread=True, dependencies=FORM)
def step_up_submit(request: Request, form: Form) -> Response:
    """Check the factor the citizen gave; on success go back to ``return_to``."""
    wanted = _wanted(form.get("acr"))
    target = safe_return_to(form.get("return_to"))
    services = request.app.state.services
    method = form.get("method", "")
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        account, login = who.account, who.login
        try:
            step_up.prove(
                uow,
                account,
                login,
                wanted,
                method,
                form,
                services.authenticator_keys,
                services.assurance_policy,
            )
        except TooManyAttempts as exc:
            until = exc.until.strftime("%H:%M")
            message = request_text(request, "step_up.locked", until=until)
            return _page(
                request, uow, account, login, wanted, target, {answer_field(method): message}
            )
        except FactorError:
            message = request_text(request, f"step_up.wrong_{answer_field(method)}")
            return _page(
                request, uow, account, login, wanted, target, {answer_field(method): message}
            )
    return Redirect(target, status_code=303)


def answer_field(method: str) -> str:
    """The form field an error belongs to (its id on the page)."""
    return REGISTRY.answer_field(method)


def request_text(request: Request, key: str, **params: str) -> str:
    """A message in the page's language."""
    return i18n.translate(language(request), key, **params)


ROUTES = [step_up_page, step_up_submit]
