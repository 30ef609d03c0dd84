"""Self-service second factors under /account/security: list, add, remove.

Every change (adding a factor, new recovery codes, removing one) first needs a
fresh re-authentication in this session (idp.web.account.confirm) and is mailed
to the citizen. The factor records how it was bound (one added in a session below
high never lifts a session to high). Removing a factor that counts for high, or
replacing recovery codes that do, needs a high session, so a stolen password
cannot strip the citizen's strong factors.
"""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Request, Response
from litestar.params import FromPath
from litestar.response import Redirect
from sqlalchemy.orm import Session

from idp import assurance
from idp.accounts import factors, passkeys, recovery_codes, totp
from idp.accounts.factors import FactorError
from idp.accounts.reauthentication import notify
from idp.db.models import Account, LoginSession
from idp.web.account import confirm as reauthentication
from idp.web.citizen.step_up import request_text
from idp.web.errors import PageError
from idp.web.forms import FORM, Form
from idp.web.handlers import get, post
from idp.web.rendering import render
from idp.web.session import signed_in

HOME = "/account/security"
TOTP = f"{HOME}/totp"
PASSKEY = f"{HOME}/passkey"
STRONG = ("proofing", "high_session")


def _who(request: Request, uow: Session) -> tuple[Account, LoginSession]:
    who = signed_in(request, uow)
    return who.account, who.login


def _level(request: Request, uow: Session, account: Account, login: LoginSession) -> str | None:
    policy = request.app.state.services.assurance_policy
    return assurance.session_acr(factors.facts(uow, account, login), policy)


def _high(request: Request, uow: Session, account: Account, login: LoginSession) -> bool:
    return _level(request, uow, account, login) == assurance.HIGH


def _step_up_to_high() -> Response:
    query = urlencode({"return_to": HOME, "acr": assurance.HIGH})
    return Redirect(f"/step-up?{query}", status_code=303)


def _done(value: str | None) -> str | None:
    return value if value in ("totp", "passkey", "removed") else None


@get(HOME, sync_to_thread=True)
def overview(request: Request) -> Response:
    """The citizen's second factors and the level of this session."""
    with request.app.state.services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        level = _level(request, uow, account, login)
        return render(
            request,
            "account_security.html",
            {
                "factors": factors.factors(uow, account.id),
                "remaining_codes": recovery_codes.remaining(uow, account.id),
                "level": level.rsplit("/", 1)[-1] if level else "none",
                "high": level == assurance.HIGH,
                "proofing": account.proofing_level,
                "done": _done(request.query_params.get("done")),
            },
        )


@get(f"{HOME}/totp", sync_to_thread=True)
def totp_form(request: Request) -> Response:
    """Start adding an authenticator app: QR code, key, first code."""
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        if (confirm := reauthentication.required(request, uow, account, login, TOTP)) is not None:
            return confirm
        enrolment = totp.begin(uow, account, services.secret_box, services.settings.issuer)
        return render(request, "totp_enrol.html", {"enrolment": enrolment, "errors": {}})


@post(f"{HOME}/totp", sync_to_thread=True, dependencies=FORM)
def totp_confirm(request: Request, form: Form) -> Response:
    """Finish adding an authenticator app with its first code."""
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        if (confirm := reauthentication.required(request, uow, account, login, TOTP)) is not None:
            return confirm
        binding = factors.binding_for(uow, account, login, services.assurance_policy)
        flow_id = form.get("flow", "")
        try:
            totp.confirm(
                uow,
                account,
                flow_id,
                form.get("code", ""),
                services.secret_box,
                binding,
                form.get("label", ""),
            )
        except FactorError:
            enrolment = totp.pending(uow, account, flow_id, services.secret_box)
            if enrolment is None:
                enrolment = totp.begin(uow, account, services.secret_box, services.settings.issuer)
            errors = {"code": request_text(request, "security.totp_wrong_code")}
            return render(
                request, "totp_enrol.html", {"enrolment": enrolment, "errors": errors}, status=400
            )
        notify(uow, services.settings, account, "added", "totp")
    return Redirect(f"{HOME}?done=totp", status_code=303)


@get(f"{HOME}/passkey", sync_to_thread=True)
def passkey_form(request: Request) -> Response:
    """Start adding a passkey (the browser's part runs in passkeys.js)."""
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        if confirm := reauthentication.required(request, uow, account, login, PASSKEY):
            return confirm
        flow_id, options = passkeys.begin_registration(uow, account, services.settings.issuer)
        return render(
            request, "passkey_enrol.html", {"flow": flow_id, "options": options, "errors": {}}
        )


@post(f"{HOME}/passkey", sync_to_thread=True, dependencies=FORM)
def passkey_register(request: Request, form: Form) -> Response:
    """Store the passkey the browser created."""
    services = request.app.state.services
    issuer = services.settings.issuer
    with services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        if confirm := reauthentication.required(request, uow, account, login, PASSKEY):
            return confirm
        binding = factors.binding_for(uow, account, login, services.assurance_policy)
        try:
            passkeys.finish_registration(
                uow,
                account,
                form.get("flow", ""),
                form.get("credential", ""),
                issuer,
                binding,
                form.get("label", ""),
            )
        except FactorError:
            flow_id, options = passkeys.begin_registration(uow, account, issuer)
            errors = {"label": request_text(request, "security.passkey_failed")}
            return render(
                request,
                "passkey_enrol.html",
                {"flow": flow_id, "options": options, "errors": errors},
                status=400,
            )
        notify(uow, services.settings, account, "added", "passkey")
    return Redirect(f"{HOME}?done=passkey", status_code=303)


@post(f"{HOME}/recovery-codes", sync_to_thread=True)
def new_recovery_codes(request: Request) -> Response:
    """Make a new set of recovery codes and show it once; replacing codes that count for
    high needs a high session."""
    services = request.app.state.services
    with services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        if recovery_codes.binding(uow, account.id) in STRONG and not _high(
            request, uow, account, login
        ):
            return _step_up_to_high()
        if (confirm := reauthentication.required(request, uow, account, login, HOME)) is not None:
            return confirm
        binding = factors.binding_for(uow, account, login, services.assurance_policy)
        codes = recovery_codes.generate(uow, account, binding, services.code_digests)
        notify(uow, services.settings, account, "renewed", "recovery_codes")
        return render(request, "recovery_codes.html", {"codes": codes})


@post(f"{HOME}/factors/{{factor_id:int}}/remove", sync_to_thread=True)
def remove_factor(request: Request, factor_id: FromPath[int]) -> Response:
    """Remove one factor; one that counts for high needs a high session."""
    with request.app.state.services.db.unit_of_work() as uow:
        account, login = _who(request, uow)
        factor = next((f for f in factors.factors(uow, account.id) if f.id == factor_id), None)
        if factor is None:
            raise PageError(404, "error.404")
        # A step-up to high uses a factor, so it also makes the session fresh enough.
        if factor.binding in STRONG and not _high(request, uow, account, login):
            return _step_up_to_high()
        if (confirm := reauthentication.required(request, uow, account, login, HOME)) is not None:
            return confirm
        factors.remove(uow, account.id, factor_id)
        notify(uow, request.app.state.services.settings, account, "removed", factor.kind)
    return Redirect(f"{HOME}?done=removed", status_code=303)


ROUTES = [
    overview,
    totp_form,
    totp_confirm,
    passkey_form,
    passkey_register,
    new_recovery_codes,
    remove_factor,
]
