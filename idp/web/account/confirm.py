"""The re-authentication page: GET/POST /account/confirm?return_to=...

Before a second factor is added, renewed or removed (idp.accounts.reauthentication),
the citizen confirms one of their factors here, or, while they have none, their
password (throttled and locked exactly as a login). Then the browser goes back to
``return_to``.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.response import Redirect
from sqlalchemy.orm import Session

from idp.accounts import login, reauthentication
from idp.accounts.authenticators import REGISTRY
from idp.accounts.errors import LoginBlocked, LoginFailed
from idp.accounts.factors import FactorError, TooManyAttempts
from idp.accounts.realms import CITIZEN
from idp.db.models import Account, LoginSession
from idp.web.citizen.step_up import answer_field, request_text
from idp.web.common import error_message
from idp.web.errors import SignInRequired
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.redirects import safe_return_to
from idp.web.rendering import render
from idp.web.session import signed_in

PAGE = "/account/confirm"


def required(
    request: Request, uow: Session, account: Account, login_row: LoginSession, here: str
) -> Response | None:
    """A redirect to the re-authentication page if the session must confirm before a
    factor changes; None if it is recent enough."""
    settings = request.app.state.services.settings
    if reauthentication.needed(uow, account, login_row, settings) is None:
        return None
    return Redirect(f"{PAGE}?{urlencode({'return_to': here})}", status_code=303)


def _page(
    request: Request,
    uow: Session,
    account: Account,
    login_row: LoginSession,
    return_to: str,
    errors: dict[str, str] | None = None,
) -> Response:
    services = request.app.state.services
    need = reauthentication.needed(uow, account, login_row, services.settings)
    if need is None:
        return Redirect(return_to, status_code=303)
    methods = REGISTRY.offered(uow, account.id) if need == reauthentication.FACTOR else ()
    prepared = REGISTRY.prepared(uow, account, methods, services.authenticator_keys)
    return render(
        request,
        "reauthenticate.html",
        {
            "need": need,
            "methods": methods,
            "return_to": return_to,
            # return_to in the address too: the language link of a page shown after a
            # wrong answer then leads back to this page for the same change.
            "action": f"{PAGE}?{urlencode({'return_to': return_to})}",
            "errors": errors or {},
            **prepared,
        },
        status=400 if errors else 200,
    )


def _return_to(value: str | None) -> str:
    return safe_return_to(value, "/account/security")


@get(PAGE, sync_to_thread=True)
def confirm_page(request: Request) -> Response:
    """Ask for a factor (or the password) unless the session confirmed one recently."""
    target = _return_to(request.query_params.get("return_to"))
    with request.app.state.services.db.unit_of_work() as uow:
        who = signed_in(request, uow, f"{PAGE}?{urlencode({'return_to': target})}")
        return _page(request, uow, who.account, who.login, target)


@post(PAGE, dependencies=FORM)
async def confirm_submit(request: Request, form: Form) -> Response:
    """Check what the citizen gave (``method``: totp, passkey, recovery, or password); on
    success back to ``return_to``. One address for every method, so the page rendered
    after a wrong answer keeps a working language link."""
    target = _return_to(form.get("return_to") or request.query_params.get("return_to"))
    if form.get("method") == reauthentication.PASSWORD:
        return await _confirm_password(request, form, target)
    return await request.app.state.services.db.run_sync(
        partial(_confirm_factor, request, form, target)
    )


def _confirm_factor(request: Request, form: Form, target: str) -> Response:
    services = request.app.state.services
    method = form.get("method", "")
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        try:
            reauthentication.confirm_factor(
                uow,
                who.account,
                who.login,
                method,
                form,
                services.authenticator_keys,
            )
        except TooManyAttempts as exc:
            message = request_text(request, "step_up.locked", until=exc.until.strftime("%H:%M"))
            return _page(
                request, uow, who.account, who.login, target, {answer_field(method): message}
            )
        except FactorError:
            message = request_text(request, f"step_up.wrong_{answer_field(method)}")
            return _page(
                request, uow, who.account, who.login, target, {answer_field(method): message}
            )
    return Redirect(target, status_code=303)


async def _confirm_password(request: Request, form: Form, target: str) -> Response:
    """The password (only offered while the account has no factor), throttled as a login:
    the same counters, so this page is no way around the lockout."""
    services = request.app.state.services
    ip = request.client.host if request.client else None
    email, need = await services.db.run_sync(partial(_email_and_need, request))
    if need != reauthentication.PASSWORD:
        # An account with a factor confirms a factor: the password alone is not enough.
        return await services.db.run_sync(partial(_shown, request, target))
    try:
        attempt = await login.begin(services.db, services.settings, CITIZEN, email=email, ip=ip)
    except LoginBlocked as exc:
        return await services.db.run_sync(partial(_refused, request, target, exc))
    matched, new_hash = await login.check_password(
        services.settings, attempt, form.get("password", "")
    )
    return await services.db.run_sync(
        partial(_concluded, request, target, attempt, matched, new_hash, ip)
    )


def _email_and_need(request: Request) -> tuple[str, str | None]:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        return who.account.email, reauthentication.needed(
            uow, who.account, who.login, services.settings
        )


def _shown(request: Request, target: str) -> Response:
    with request.app.state.services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        return _page(request, uow, who.account, who.login, target)


def _refused(request: Request, target: str, error: LoginBlocked | LoginFailed) -> Response:
    with request.app.state.services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        return _page(
            request,
            uow,
            who.account,
            who.login,
            target,
            {"password": _wording(request, error)},
        )


def _wording(request: Request, error: LoginBlocked | LoginFailed) -> str:
    if isinstance(error, LoginFailed):  # the login's "email or password" would puzzle here
        return request_text(request, "reauth.wrong_password")
    return error_message(request, error)


def _concluded(
    request: Request,
    target: str,
    attempt: login.Attempt,
    matched: bool,
    new_hash: str | None,
    ip: str | None,
) -> Response:
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        who = signed_in(request, uow)
        if attempt.account_id != who.account.id:
            raise SignInRequired(None)  # the session changed while the password was checked
        try:
            login.conclude(
                uow, services.settings, attempt, matched=matched, new_hash=new_hash, ip=ip
            )
        except (LoginBlocked, LoginFailed) as exc:
            error: Any = exc
        else:
            reauthentication.note_password(uow, who.login, ip=ip)
            return Redirect(target, status_code=303)
    return _refused(request, target, error)


ROUTES = [confirm_page, confirm_submit]
