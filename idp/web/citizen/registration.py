"""Registration and e-mail verification: /register, /verify-email, /verify-email/resend.

Handlers parse the form, call one function of ``idp.accounts`` and render.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.params import FromQuery
from litestar.response import Redirect

from idp.accounts.errors import (
    AccountError,
    FormInvalid,
    ResendTooSoon,
    TooManyFlows,
    VerificationFailed,
)
from idp.accounts.registration import Applicant, apply, open_flow, register, resend, verify
from idp.web import csrf
from idp.web.common import (
    MAX_EMAIL,
    client_ip,
    error_message,
    field_errors,
    login_url,
    nudge_mail,
    services_of,
    too_long,
)
from idp.web.errors import TooManyRequests
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.redirects import safe_return_to
from idp.web.rendering import language, render
from idp.web.session import (
    session_token,
    set_session_cookie,
)

# -- registration -------------------------------------------------------------------


def _register_page(
    request: Request, return_to: str, errors: dict[str, str], email: str = "", consent=False
) -> Response:
    settings = services_of(request).settings
    return render(
        request,
        "register.html",
        {
            "errors": errors,
            "email": email,
            "consent": consent,
            "return_to": return_to,
            "login_url": login_url(return_to),
            "min_length": settings.password_min_length,
        },
        status=400 if errors else 200,
    )


@get("/register", sync_to_thread=False)
def register_page(request: Request, return_to: FromQuery[str | None] = None) -> Response:
    """The registration form."""
    return _register_page(request, safe_return_to(return_to), {})


@post("/register", dependencies=FORM)
async def register_submit(request: Request, form: Form) -> Response:
    """Register, then show where to enter the code from the mail.

    Two steps (idp.accounts.registration): check the form and hash the password
    (awaited, no transaction open meanwhile), then write the registration where the
    database's work costs least (``Database.run_sync``).
    """
    services = services_of(request)
    return_to = safe_return_to(form.get("return_to"))
    email = form.get("email", "")
    consent = form.get("privacy_consent") == "yes"
    if len(email) > MAX_EMAIL:
        return _register_page(
            request, return_to, field_errors(request, too_long("email")), "", consent
        )
    try:
        applicant = await apply(
            services.settings, email=email, password=form.get("password", ""), consent=consent
        )
    except FormInvalid as exc:
        return _register_page(request, return_to, field_errors(request, exc), email, consent)
    flow_id = await services.db.run_sync(partial(_registered, request, applicant, return_to))
    nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id})}", status_code=303)


def _registered(request: Request, applicant: Applicant, return_to: str) -> str:
    """Write the registration in one unit of work; the verification flow's id."""
    services = services_of(request)
    with services.db.unit_of_work() as uow:
        try:
            flow = register(
                uow,
                services.settings,
                services.code_digests,
                applicant,
                locale=language(request),
                browser=csrf.presession(request)[0],
                return_to=return_to,
                ip=client_ip(request),
            )
        except TooManyFlows as exc:
            raise TooManyRequests(exc.key, exc.seconds) from None
        return flow.id


# -- email verification -----------------------------------------------------------------


def _verify_page(
    request: Request, flow_id: str, errors: dict[str, str], *, status: int = 200, sent=False
) -> Response:
    with services_of(request).db.unit_of_work() as uow:
        try:
            flow = open_flow(uow, flow_id)
        except VerificationFailed:
            return _verify_invalid(request)
        email = flow.state["email"]
    return render(
        request,
        "verify_email.html",
        {"errors": errors, "flow": flow_id, "email": email, "sent": sent},
        status=400 if errors and status == 200 else status,
    )


def _verify_invalid(request: Request) -> Response:
    return render(request, "verify_invalid.html", status=400)


@get("/verify-email", sync_to_thread=True)
def verify_page(
    request: Request,
    flow: FromQuery[str | None] = None,
    token: FromQuery[str | None] = None,
    sent: FromQuery[str | None] = None,
) -> Response:
    """Enter the code from the mail, or (from the mail's link) confirm with one button.

    The link only shows a button: mail scanners that fetch links must not use it up.
    """
    if not flow or len(flow) > 64:
        return _verify_invalid(request)
    if token:
        return render(
            request, "verify_confirm.html", {"flow": flow, "token": token[:128], "errors": {}}
        )
    return _verify_page(request, flow, {}, sent=sent == "1")


@post("/verify-email", dependencies=FORM, sync_to_thread=True)
def verify_submit(request: Request, form: Form) -> Response:
    """Check the link's token or the typed code; log the registering browser in."""
    services = services_of(request)
    flow_id = form.get("flow", "")[:64]
    token = form.get("token") or None
    code = None if token else form.get("code", "")
    with services.db.unit_of_work() as uow:
        try:
            result = verify(
                uow,
                services.settings,
                services.code_digests,
                flow_id,
                token=token,
                code=code,
                browser=csrf.presession(request)[0],
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent"),
                replacing=session_token(request),
            )
        except VerificationFailed as exc:
            error = exc
        else:
            error = None
            email = result.account.email
    if error is not None:
        if token is not None or error.key == "verify.invalid":
            return _verify_invalid(request)
        return _verify_page(request, flow_id, field_errors(request, error), status=400)
    next_url = safe_return_to(result.return_to)
    token_cookie = result.signed_in.token if result.signed_in is not None else None
    if token_cookie:
        csrf.rotate(request)  # a session was opened: the page's forms get the new token
    response = render(
        request,
        "verified.html",
        {
            "logged_in": token_cookie is not None,
            "next_url": next_url if token_cookie else login_url(next_url, email),
        },
    )
    if token_cookie:
        set_session_cookie(response, token_cookie, services.settings)
    return response


@post("/verify-email/resend", dependencies=FORM, sync_to_thread=True)
def verify_resend(request: Request, form: Form) -> Response:
    """Send the verification mail again (after a cool-down)."""
    services = services_of(request)
    flow_id = form.get("flow", "")[:64]
    with services.db.unit_of_work() as uow:
        try:
            resend(uow, flow_id, services.settings, services.code_digests)
        except ResendTooSoon as exc:
            error: AccountError | None = exc
        except VerificationFailed:
            return _verify_invalid(request)
        else:
            error = None
    if error is not None:
        return _verify_page(request, flow_id, {"": error_message(request, error)}, status=429)
    nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id, 'sent': '1'})}", status_code=303)


ROUTES = [register_page, register_submit, verify_page, verify_submit, verify_resend]
