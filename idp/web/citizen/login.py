"""Log in and out: /login, /logout. The login is the password authenticator; every way in
ends in ``idp.accounts.signin.open_login_session``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Request, Response
from litestar.params import FromQuery
from litestar.response import Redirect

from idp.accounts import login
from idp.accounts.authenticators import REGISTRY
from idp.accounts.errors import (
    LoginBlocked,
    LoginFailed,
)
from idp.accounts.realms import CITIZEN
from idp.accounts.signin import close_login_session
from idp.web import csrf
from idp.web.common import MAX_EMAIL, client_ip, error_message, services_of
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.redirects import safe_return_to
from idp.web.rendering import render
from idp.web.session import (
    clear_session_cookie,
    current_session,
    session_token,
    set_session_cookie,
)

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
            "sign_in": REGISTRY.sign_in(),
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
    """Check email and password; on success a new session and off to ``return_to``
    (idp.accounts.login.password_login: no transaction open while the hash runs)."""
    services = services_of(request)
    return_to = safe_return_to(form.get("return_to"))
    email = form.get("email", "")[:MAX_EMAIL]
    try:
        opened = await login.password_login(
            services.db,
            services.settings,
            CITIZEN,
            email=email,
            password=form.get("password", ""),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            replacing=session_token(request),
        )
    except LoginBlocked as exc:
        return _login_page(request, return_to, email, {"": error_message(request, exc)}, 429)
    except LoginFailed as exc:
        return _login_page(request, return_to, email, {"email": error_message(request, exc)}, 400)
    return _logged_in(request, return_to, opened.token)


def _logged_in(request: Request, return_to: str, token: str) -> Response:
    """Off to ``return_to`` with the new session's cookie and a new CSRF pre-session id."""
    response = Redirect(return_to, status_code=303)
    set_session_cookie(response, token, services_of(request).settings)
    csrf.rotate(request)
    csrf.write_cookie(request, response)
    return response


@get("/logout", sync_to_thread=True)
def logout_page(request: Request) -> Response:
    """Ask before logging out (a link must not end a session by itself)."""
    with services_of(request).db.unit_of_work() as uow:
        logged_in = current_session(request, uow) is not None
    return render(request, "logout.html" if logged_in else "logged_out.html")


@post("/logout", dependencies=FORM, sync_to_thread=True)
def logout_submit(request: Request, form: Form) -> Response:
    """End this browser's session."""
    services = services_of(request)
    with services.db.unit_of_work() as uow:
        row = current_session(request, uow)
        if row is not None:
            close_login_session(uow, CITIZEN, row, ip=client_ip(request))
    response = render(request, "logged_out.html")
    clear_session_cookie(response, services.settings)
    return response


ROUTES = [login_page, login_submit, logout_page, logout_submit]
