"""The account page (/account) and a new verification code for a signed-in citizen."""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Request, Response
from litestar.response import Redirect

from idp.accounts.registration import start_verification
from idp.web import csrf
from idp.web.common import local_time, nudge_mail, services_of
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.rendering import render
from idp.web.session import signed_in


@get("/account", sync_to_thread=True)
def account_page(request: Request) -> Response:
    """Who is logged in, how, and the way out."""
    with services_of(request).db.unit_of_work() as uow:
        who = signed_in(request, uow)
        account, row = who.account, who.login
        context = {
            "email": account.email,
            "verified": account.email_verified_at is not None,
            "proofing_level": account.proofing_level,
            "since": local_time(request, row.auth_time),
        }
    return render(request, "account.html", context)


@post("/account/verify-email", dependencies=FORM, sync_to_thread=True)
def account_verify_email(request: Request, form: Form) -> Response:
    """Mail the logged-in citizen's verification flow a new code (once per cool-down)."""
    services = services_of(request)
    with services.db.unit_of_work() as uow:
        account = signed_in(request, uow, "/account").account
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
    nudge_mail(request)
    return Redirect(f"/verify-email?{urlencode({'flow': flow_id})}", status_code=303)


ROUTES = [account_page, account_verify_email]
