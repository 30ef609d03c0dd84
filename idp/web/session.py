"""The SSO session cookie: the only place the web layer reads or writes it.

``__Host-idp_session`` (Secure) when the issuer is https; ``idp_session``
without Secure over plain http (development, tests), since browsers drop
Secure cookies there. Always HttpOnly, SameSite=Lax, Path=/. The cookie holds
the session token; the database only its digest (idp.accounts.sessions).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Request, Response
from sqlalchemy.orm import Session

from idp.accounts.sessions import load_session
from idp.db.loads import ACCOUNT
from idp.db.models import Account, LoginSession
from idp.settings import Settings
from idp.web.cookies import set_cookie
from idp.web.errors import SignInRequired


def cookie_name(settings: Settings) -> str:
    """The session cookie's name for this issuer."""
    return "__Host-idp_session" if _secure(settings) else "idp_session"


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


def session_token(request: Request) -> str | None:
    """The raw token from the browser's session cookie, if any."""
    return request.cookies.get(cookie_name(request.app.state.services.settings))


def current_session(request: Request, uow: Session) -> LoginSession | None:
    """The browser's live login session, or None (no cookie, unknown, ended, timed out)."""
    settings = request.app.state.services.settings
    return load_session(uow, session_token(request), settings)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The citizen behind a page request and the login session they are in."""

    account: Account
    login: LoginSession


def signed_in(request: Request, uow: Session, return_to: str | None = None) -> SignedIn:
    """The signed-in citizen; without a live session, SignInRequired (a redirect to login)."""
    login = current_session(request, uow)
    account = ACCOUNT.get(uow, id=login.account_id) if login else None
    if login is None or account is None:
        raise SignInRequired(return_to)
    return SignedIn(account, login)


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """Give the browser its (new) session cookie; it lives as long as the browser session."""
    set_cookie(
        response,
        cookie_name(settings),
        token,
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Remove the session cookie from the browser."""
    # Not delete_cookie(): a __Host- cookie is only replaced by one that is Secure too.
    response.set_cookie(
        cookie_name(settings),
        "",
        max_age=0,
        expires=0,
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="lax",
    )
