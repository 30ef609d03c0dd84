"""Citizen pages of guest accounts: register, verify email, log in and out, reset, account.

Handlers parse the form, call one function of ``idp.accounts`` in one unit of
work and render; domain errors become messages next to their fields.
Handlers that touch the database or hash passwords run in worker threads
(argon2id releases the GIL), but for the login and the registration: they
await their hash, then run their unit of work where the database's work costs
least (``Database.run_sync``), so no transaction is open while a hash runs.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Request, Response
from litestar.params import FromQuery
from litestar.response import Redirect

from idp.accounts import login
from idp.accounts.errors import (
    AccountError,
    FormInvalid,
    LoginBlocked,
    LoginFailed,
    ResendTooSoon,
    ResetInvalid,
    TooManyFlows,
    VerificationFailed,
)
from idp.accounts.recovery import open_reset, request_reset, reset_password
from idp.accounts.registration import (
    Applicant,
    apply,
    open_flow,
    register,
    resend,
    start_verification,
    verify,
)
from idp.accounts.sessions import end_session, open_session
from idp.audit.events import record
from idp.db.models import Account
from idp.web import csrf, i18n
from idp.web.errors import TooManyRequests
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.redirects import safe_return_to
from idp.web.rendering import language, render
from idp.web.session import (
    clear_session_cookie,
    current_session,
    session_token,
    set_session_cookie,
)

try:
    LOCAL_TIME = ZoneInfo("Europe/Berlin")
except ZoneInfoNotFoundError:  # a system without time zone data shows UTC
    LOCAL_TIME = None

MAX_EMAIL = 320
RESET_MAIL_DELAY = (0.5, 1.5)  # seconds: see _unhurried


def _services(request: Request) -> Any:
    return request.app.state.services


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def error_message(request: Request, error: AccountError) -> str:
    """An account error in the page's language (waits as words)."""
    params = dict(error.params)
    if "seconds" in params:
        params["wait"] = _duration(language(request), params.pop("seconds"))
    return i18n.translate(language(request), error.key, **params)


def _duration(lang: str, seconds: int) -> str:
    if seconds < 60:
        key = "time.second" if seconds == 1 else "time.seconds"
        return i18n.translate(lang, key, n=seconds)
    minutes = math.ceil(seconds / 60)
    return i18n.translate(lang, "time.minute" if minutes == 1 else "time.minutes", n=minutes)


def _errors(request: Request, *problems: AccountError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in problems:
        for error in problem.errors if isinstance(problem, FormInvalid) else [problem]:
            errors.setdefault(error.field or "", error_message(request, error))
    return errors


def _time(request: Request, value: datetime) -> str:
    if LOCAL_TIME is not None:
        value = value.astimezone(LOCAL_TIME)
        zone = ""
    else:
        zone = " UTC"
    pattern = "%d.%m.%Y, %H:%M" if language(request) == "de" else "%Y-%m-%d %H:%M"
    return value.strftime(pattern) + zone


def _login_url(return_to: str | None = None, login_hint: str | None = None) -> str:
    params = {k: v for k, v in (("return_to", return_to), ("login_hint", login_hint)) if v}
    return "/login" + (f"?{urlencode(params)}" if params else "")


def _log_in(request: Request, uow: Any, account_id: int) -> str:
    """A fresh session (never the old one: session fixation), the old one ended; its token.

    The browser's CSRF pre-session id is rotated with it (idp.web.csrf.rotate).
    """
    services = _services(request)
    csrf.rotate(request)
    old = current_session(request, uow)
    if old is not None:
        end_session(uow, old, "replaced")
    token, _ = open_session(
        uow,
        account_id,
        ["pwd"],
        services.settings,
        ip=_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return token


def _nudge_mail(request: Request, delay: float = 0) -> None:
    request.app.state.mailer.nudge(delay)


def _unhurried() -> float:
    """When to deliver a mail whose existence the answer must not show: a delivery beside
    the answer would slow it (a timing oracle), so it runs a random moment later."""
    return RESET_MAIL_DELAY[0] + secrets.randbelow(1000) / 1000 * (
        RESET_MAIL_DELAY[1] - RESET_MAIL_DELAY[0]
    )


# -- registration -------------------------------------------------------------------


def _register_page(
    request: Request, return_to: str, errors: dict[str, str], email: str = "", consent=False
) -> Response:
    settings = _services(request).settings
    return render(
        request,
        "register.html",
        {
            "errors": errors,
            "email": email,
            "consent": consent,
            "return_to": return_to,
            "login_url": _login_url(return_to),
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
    (awaited, no transaction open meanwhile), then write the registration.
    """
    services = _services(request)
    return_to = safe_return_to(form.get("return_to"))
    email = form.get("email", "")
    consent = form.get("privacy_consent") == "yes"
    if len(email) > MAX_EMAIL:
        return _register_page(request, return_to, _errors(request, _too_long("email")), "", consent)
    try:
        applicant = await apply(
            services.settings, email=email, password=form.get("password", ""), consent=consent
        )
    except FormInvalid as exc:
        return _register_page(request, return_to, _errors(request, exc), email, consent)
    flow_id = await services.db.run_sync(partial(_registered, request, applicant, return_to))
    _nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id})}", status_code=303)


def _registered(request: Request, applicant: Applicant, return_to: str) -> str:
    """Write the registration in one unit of work; the verification flow's id."""
    services = _services(request)
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
                ip=_ip(request),
            )
        except TooManyFlows as exc:
            raise TooManyRequests(exc.key, exc.seconds) from None
        return flow.id


def _too_long(field: str) -> AccountError:
    error = AccountError("form.too_long")
    error.field = field
    return error


# -- email verification -----------------------------------------------------------------


def _verify_page(
    request: Request, flow_id: str, errors: dict[str, str], *, status: int = 200, sent=False
) -> Response:
    with _services(request).db.unit_of_work() as uow:
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
    services = _services(request)
    flow_id = form.get("flow", "")[:64]
    token = form.get("token") or None
    code = None if token else form.get("code", "")
    token_cookie: str | None = None
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
                ip=_ip(request),
            )
        except VerificationFailed as exc:
            error = exc
        else:
            error = None
            email = result.account.email
            if result.same_browser:
                token_cookie = _log_in(request, uow, result.account.id)
    if error is not None:
        if token is not None or error.key == "verify.invalid":
            return _verify_invalid(request)
        return _verify_page(request, flow_id, _errors(request, error), status=400)
    next_url = safe_return_to(result.return_to)
    response = render(
        request,
        "verified.html",
        {
            "logged_in": token_cookie is not None,
            "next_url": next_url if token_cookie else _login_url(next_url, email),
        },
    )
    if token_cookie:
        set_session_cookie(response, token_cookie, services.settings)
    return response


@post("/verify-email/resend", dependencies=FORM, sync_to_thread=True)
def verify_resend(request: Request, form: Form) -> Response:
    """Send the verification mail again (after a cool-down)."""
    services = _services(request)
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
    _nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id, 'sent': '1'})}", status_code=303)


# -- login and logout --------------------------------------------------------------------


# The login page's values that are only text in it: the blank page is rendered once
# per language and reused (idp.web.rendering). One with an email or errors is rendered.
_LOGIN_SLOTS = ("return_to", "register_url")


def _login_page(
    request: Request, return_to: str, email: str, errors: dict[str, str], status: int = 200
) -> Response:
    return render(
        request,
        "login.html",
        {
            "errors": errors,
            "email": email,
            "return_to": return_to,
            "register_url": "/register?" + urlencode({"return_to": return_to}),
        },
        status=status,
        slots=None if email or errors else _LOGIN_SLOTS,
    )


@get("/login", sync_to_thread=False)
def login_page(
    request: Request,
    return_to: FromQuery[str | None] = None,
    login_hint: FromQuery[str | None] = None,
) -> Response:
    """The login form (``login_hint`` fills in the email)."""
    return _login_page(request, safe_return_to(return_to), (login_hint or "")[:MAX_EMAIL], {})


@post("/login", dependencies=FORM)
async def login_submit(request: Request, form: Form) -> Response:
    """Check email and password; on success a new session and off to ``return_to``.

    Three steps (idp.accounts.login): find the account, check the password (awaited,
    no transaction open while the hash runs), record the outcome and open the session.
    """
    services = _services(request)
    return_to = safe_return_to(form.get("return_to"))
    email = form.get("email", "")[:MAX_EMAIL]
    try:
        found = await login.begin(services.db, services.settings, email=email, ip=_ip(request))
        matched, new_hash = await login.check_password(
            services.settings, found, form.get("password", "")
        )
        if session_token(request) is None:  # else the browser's session ends in the unit of work
            token = await login.succeed(
                services.db,
                services.settings,
                found,
                matched=matched,
                new_hash=new_hash,
                ip=_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
            if token is not None:
                return _logged_in(request, return_to, token)
    except LoginBlocked as exc:
        return _login_page(request, return_to, email, {"": error_message(request, exc)}, 429)
    return await services.db.run_sync(
        partial(_conclude_login, request, found, matched, new_hash, return_to, email)
    )


def _conclude_login(
    request: Request,
    attempt: login.Attempt,
    matched: bool,
    new_hash: str | None,
    return_to: str,
    email: str,
) -> Response:
    services = _services(request)
    with services.db.unit_of_work() as uow:
        try:
            account_id = login.conclude(
                uow, services.settings, attempt, matched=matched, new_hash=new_hash, ip=_ip(request)
            )
        except LoginBlocked as exc:
            return _login_page(request, return_to, email, {"": error_message(request, exc)}, 429)
        except LoginFailed as exc:
            return _login_page(
                request, return_to, email, {"email": error_message(request, exc)}, 400
            )
        token = _log_in(request, uow, account_id)
    return _logged_in(request, return_to, token)


def _logged_in(request: Request, return_to: str, token: str) -> Response:
    """Off to ``return_to`` with the new session's cookie and a new CSRF pre-session id."""
    response = Redirect(return_to, status_code=303)
    set_session_cookie(response, token, _services(request).settings)
    csrf.rotate(request)
    csrf.write_cookie(request, response)
    return response


@get("/logout", sync_to_thread=True)
def logout_page(request: Request) -> Response:
    """Ask before logging out (a link must not end a session by itself)."""
    with _services(request).db.unit_of_work() as uow:
        logged_in = current_session(request, uow) is not None
    return render(request, "logout.html" if logged_in else "logged_out.html")


@post("/logout", dependencies=FORM, sync_to_thread=True)
def logout_submit(request: Request, form: Form) -> Response:
    """End this browser's session."""
    services = _services(request)
    with services.db.unit_of_work() as uow:
        row = current_session(request, uow)
        if row is not None:
            end_session(uow, row, "logout")
            record(uow, "logout", account_id=row.account_id, ip=_ip(request))
    response = render(request, "logged_out.html")
    clear_session_cookie(response, services.settings)
    return response


# -- password reset ----------------------------------------------------------------------


def _with_min_length(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "min_length": _services(request).settings.password_min_length}


@get("/password/forgot", sync_to_thread=False)
def forgot_page(request: Request, login_hint: FromQuery[str | None] = None) -> Response:
    """Ask for a reset link."""
    return render(request, "forgot.html", {"errors": {}, "email": (login_hint or "")[:MAX_EMAIL]})


@post("/password/forgot", dependencies=FORM, sync_to_thread=True)
def forgot_submit(request: Request, form: Form) -> Response:
    """Mail a reset link if the address has an account; the answer is the same either way."""
    services = _services(request)
    email = form.get("email", "")
    if len(email) > MAX_EMAIL:
        errors = _errors(request, _too_long("email"))
        return render(request, "forgot.html", {"errors": errors, "email": ""}, status=400)
    with services.db.unit_of_work() as uow:
        try:
            request_reset(uow, services.settings, email=email, ip=_ip(request))
        except TooManyFlows as exc:
            raise TooManyRequests(exc.key, exc.seconds) from None
        except AccountError as exc:
            errors = _errors(request, exc)
            return render(request, "forgot.html", {"errors": errors, "email": email}, status=400)
    _nudge_mail(request, _unhurried())
    return render(request, "forgot_sent.html")


@get("/password/reset", sync_to_thread=True)
def reset_page(
    request: Request, flow: FromQuery[str | None] = None, token: FromQuery[str | None] = None
) -> Response:
    """The new-password form of a reset link."""
    with _services(request).db.unit_of_work() as uow:
        try:
            open_reset(uow, (flow or "")[:64], (token or "")[:128])
        except ResetInvalid:
            return render(request, "reset_invalid.html", status=400)
    context = {"errors": {}, "flow": flow, "token": token}
    return render(request, "reset.html", _with_min_length(request, context))


@post("/password/reset", dependencies=FORM, sync_to_thread=True)
def reset_submit(request: Request, form: Form) -> Response:
    """Set the new password; every session of the account ends."""
    services = _services(request)
    flow_id, token = form.get("flow", "")[:64], form.get("token", "")[:128]
    with services.db.unit_of_work() as uow:
        try:
            account = reset_password(
                uow,
                services.settings,
                flow_id=flow_id,
                token=token,
                password=form.get("password", ""),
                ip=_ip(request),
            )
        except ResetInvalid:
            return render(request, "reset_invalid.html", status=400)
        except AccountError as exc:
            context = {"errors": _errors(request, exc), "flow": flow_id, "token": token}
            return render(request, "reset.html", _with_min_length(request, context), status=400)
        email = account.email
    _nudge_mail(request)
    response = render(request, "reset_done.html", {"login_url": _login_url(None, email)})
    clear_session_cookie(response, services.settings)
    return response


# -- the account page --------------------------------------------------------------------


@get("/account", sync_to_thread=True)
def account_page(request: Request) -> Response:
    """Who is logged in, how, and the way out."""
    with _services(request).db.unit_of_work() as uow:
        row = current_session(request, uow)
        account = uow.get(Account, row.account_id) if row else None
        if row is None or account is None:
            return Redirect(_login_url("/account"), status_code=303)
        context = {
            "email": account.email,
            "verified": account.email_verified_at is not None,
            "proofing_level": account.proofing_level,
            "since": _time(request, row.auth_time),
        }
    return render(request, "account.html", context)


@post("/account/verify-email", dependencies=FORM, sync_to_thread=True)
def account_verify_email(request: Request, form: Form) -> Response:
    """Mail the logged-in citizen's verification flow a new code (once per cool-down)."""
    services = _services(request)
    with services.db.unit_of_work() as uow:
        row = current_session(request, uow)
        account = uow.get(Account, row.account_id) if row else None
        if account is None:
            return Redirect(_login_url("/account"), status_code=303)
        if account.email_verified_at is not None:
            return Redirect("/account", status_code=303)
        flow = start_verification(
            uow,
            account,
            services.settings,
            services.code_digests,
            browser=csrf.presession(request)[0],
        )
        flow_id = flow.id
    _nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id})}", status_code=303)


ROUTES = [
    register_page,
    register_submit,
    verify_page,
    verify_submit,
    verify_resend,
    login_page,
    login_submit,
    logout_page,
    logout_submit,
    forgot_page,
    forgot_submit,
    reset_page,
    reset_submit,
    account_page,
    account_verify_email,
]
