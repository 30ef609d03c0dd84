"""Password reset: /password/forgot and /password/reset."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.params import FromQuery

from idp.accounts.errors import (
    AccountError,
    ResetInvalid,
    TooManyFlows,
)
from idp.accounts.recovery import open_reset, request_reset, reset_password
from idp.web.common import (
    MAX_EMAIL,
    client_ip,
    field_errors,
    login_url,
    nudge_mail,
    services_of,
    too_long,
    unhurried,
)
from idp.web.errors import TooManyRequests
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.rendering import render
from idp.web.session import (
    clear_session_cookie,
)


def _with_min_length(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "min_length": services_of(request).settings.password_min_length}


@get("/password/forgot", sync_to_thread=False)
def forgot_page(request: Request, login_hint: FromQuery[str | None] = None) -> Response:
    """Ask for a reset link."""
    return render(request, "forgot.html", {"errors": {}, "email": (login_hint or "")[:MAX_EMAIL]})


@post("/password/forgot", dependencies=FORM, sync_to_thread=True)
def forgot_submit(request: Request, form: Form) -> Response:
    """Mail a reset link if the address has an account; the answer is the same either way."""
    services = services_of(request)
    email = form.get("email", "")
    if len(email) > MAX_EMAIL:
        errors = field_errors(request, too_long("email"))
        return render(request, "forgot.html", {"errors": errors, "email": ""}, status=400)
    with services.db.unit_of_work() as uow:
        try:
            request_reset(uow, services.settings, email=email, ip=client_ip(request))
        except TooManyFlows as exc:
            raise TooManyRequests(exc.key, exc.seconds) from None
        except AccountError as exc:
            errors = field_errors(request, exc)
            return render(request, "forgot.html", {"errors": errors, "email": email}, status=400)
    nudge_mail(request, unhurried())
    return render(request, "forgot_sent.html")


@get("/password/reset", sync_to_thread=True)
def reset_page(
    request: Request, flow: FromQuery[str | None] = None, token: FromQuery[str | None] = None
) -> Response:
    """The new-password form of a reset link."""
    with services_of(request).db.unit_of_work() as uow:
        try:
            open_reset(uow, (flow or "")[:64], (token or "")[:128])
        except ResetInvalid:
            return render(request, "reset_invalid.html", status=400)
    context = {"errors": {}, "flow": flow, "token": token}
    return render(request, "reset.html", _with_min_length(request, context))


@post("/password/reset", dependencies=FORM, sync_to_thread=True)
def reset_submit(request: Request, form: Form) -> Response:
    """Set the new password; every session of the account ends."""
    services = services_of(request)
    flow_id, token = form.get("flow", "")[:64], form.get("token", "")[:128]
    with services.db.unit_of_work() as uow:
        try:
            account = reset_password(
                uow,
                services.settings,
                flow_id=flow_id,
                token=token,
                password=form.get("password", ""),
                ip=client_ip(request),
            )
        except ResetInvalid:
            return render(request, "reset_invalid.html", status=400)
        except AccountError as exc:
            context = {"errors": field_errors(request, exc), "flow": flow_id, "token": token}
            return render(request, "reset.html", _with_min_length(request, context), status=400)
        email = account.email
    nudge_mail(request)
    response = render(request, "reset_done.html", {"login_url": login_url(None, email)})
    clear_session_cookie(response, services.settings)
    return response


ROUTES = [forgot_page, forgot_submit, reset_page, reset_submit]
