"""The session cookies: the only place the web layer reads or writes them.

Each realm (idp.accounts.realms) has its cookie, named and scoped by the realm:
the citizen's is ``__Host-idp_session`` (Secure, Path=/) when the issuer is
https, staff's ``__Secure-idp_clerk`` (Path=/clerk: a ``__Host-`` cookie must have
Path=/); over plain http (development, tests) the bare names without Secure, since
browsers drop Secure cookies there. Always HttpOnly, SameSite=Lax. The cookie
holds the session token; the database only its digest (idp.accounts.sessions).
Every function takes the realm, the citizen's unless told.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Request, Response
from sqlalchemy.orm import Session

from idp.accounts.realms import CITIZEN, Realm
from idp.accounts.sessions import load_session
from idp.db.loads import ACCOUNT
from idp.db.models import Account, LoginSession
from idp.settings import Settings
from idp.web.cookies import set_cookie
from idp.web.errors import SignInRequired


def cookie_name(settings: Settings, realm: Realm = CITIZEN) -> str:
    """The session cookie's name of ``realm`` for this issuer."""
    if not _secure(settings):
        return realm.cookie
    return ("__Host-" if realm.path == "/" else "__Secure-") + realm.cookie


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


def session_token(request: Request, realm: Realm = CITIZEN) -> str | None:
    """The raw token from the browser's session cookie of ``realm``, if any."""
    return request.cookies.get(cookie_name(request.app.state.services.settings, realm))


def current_session(request: Request, uow: Session, realm: Realm = CITIZEN) -> LoginSession | None:
    """The browser's live login session of ``realm``, or None (no cookie, unknown, of another
    realm, ended, timed out)."""
    settings = request.app.state.services.settings
    return load_session(uow, session_token(request, realm), realm, settings)


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


def set_session_cookie(
    response: Response, token: str, settings: Settings, realm: Realm = CITIZEN
) -> None:
    """Give the browser its (new) session cookie of ``realm``; it lives as long as the
    browser session."""
    set_cookie(
        response,
        cookie_name(settings, realm),
        token,
        path=realm.path,
        secure=_secure(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings, realm: Realm = CITIZEN) -> None:
    """Remove the session cookie of ``realm`` from the browser."""
    # Not delete_cookie(): a __Host- cookie is only replaced by one that is Secure too.
    response.set_cookie(
        cookie_name(settings, realm),
        "",
        max_age=0,
        expires=0,
        path=realm.path,
        secure=_secure(settings),
        httponly=True,
        samesite="lax",
    )
