"""What the citizen's and the account pages share: texts of account errors, local times,
the login address, the mail nudge."""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Request

from idp.accounts.errors import (
    AccountError,
    FormInvalid,
)
from idp.web import i18n
from idp.web.rendering import language

try:
    LOCAL_TIME = ZoneInfo("Europe/Berlin")
except ZoneInfoNotFoundError:  # a system without time zone data shows UTC
    LOCAL_TIME = None

MAX_EMAIL = 320
RESET_MAIL_DELAY = (0.5, 1.5)  # seconds: see unhurried


def services_of(request: Request) -> Any:
    return request.app.state.services


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def error_message(request: Request, error: AccountError) -> str:
    """An account error in the page's language (waits as words)."""
    params = dict(error.params)
    if "seconds" in params:
        params["wait"] = duration(language(request), params.pop("seconds"))
    return i18n.translate(language(request), error.key, **params)


def duration(lang: str, seconds: int) -> str:
    if seconds < 60:
        key = "time.second" if seconds == 1 else "time.seconds"
        return i18n.translate(lang, key, n=seconds)
    minutes = math.ceil(seconds / 60)
    return i18n.translate(lang, "time.minute" if minutes == 1 else "time.minutes", n=minutes)


def field_errors(request: Request, *problems: AccountError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in problems:
        for error in problem.errors if isinstance(problem, FormInvalid) else [problem]:
            errors.setdefault(error.field or "", error_message(request, error))
    return errors


def local_time(request: Request, value: datetime) -> str:
    if LOCAL_TIME is not None:
        value = value.astimezone(LOCAL_TIME)
        zone = ""
    else:
        zone = " UTC"
    pattern = "%d.%m.%Y, %H:%M" if language(request) == "de" else "%Y-%m-%d %H:%M"
    return value.strftime(pattern) + zone


def login_url(return_to: str | None = None, login_hint: str | None = None) -> str:
    params = {k: v for k, v in (("return_to", return_to), ("login_hint", login_hint)) if v}
    return "/login" + (f"?{urlencode(params)}" if params else "")


def nudge_mail(request: Request, delay: float = 0) -> None:
    request.app.state.mailer.nudge(delay)


def unhurried() -> float:
    """When to deliver a mail whose existence the answer must not show: a delivery beside
    the answer would slow it (a timing oracle), so it runs a random moment later."""
    return RESET_MAIL_DELAY[0] + secrets.randbelow(1000) / 1000 * (
        RESET_MAIL_DELAY[1] - RESET_MAIL_DELAY[0]
    )


def too_long(field: str) -> AccountError:
    error = AccountError("form.too_long")
    error.field = field
    return error
