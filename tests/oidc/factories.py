"""Factories for OpenID Connect tests: clients, accounts, sessions, and a scripted browser."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from idp import clock
from idp.accounts.realms import CITIZEN
from idp.accounts.registration import create_account
from idp.accounts.signin import PASSWORD as PASSWORD_ONLY
from idp.accounts.signin import open_login_session
from idp.db.engine import Database
from idp.db.models import Account
from idp.oidc.clients import add_client
from idp.settings import Settings

REDIRECT_URI = "https://rp.example.de/callback"


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    client_secret: str | None
    redirect_uri: str


def client(db: Database, **fields: Any) -> ClientInfo:
    """Register a client; defaults: confidential, basic auth, every scope."""
    values: dict[str, Any] = {
        "name": "Wohngeld",
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [REDIRECT_URI],
        "post_logout_redirect_uris": ["https://rp.example.de/logged-out"],
        "scopes": ["openid", "profile", "email", "address", "phone", "offline_access"],
        "grant_types": ["authorization_code", "refresh_token"],
    }
    values.update(fields)
    with db.unit_of_work() as session:
        row, secret = add_client(session, **values)
        return ClientInfo(row.client_id, secret, row.redirect_uris[0] if row.redirect_uris else "")


def account(
    db: Database,
    email: str | None = None,
    *,
    given_name: str | None = "Erika",
    family_name: str | None = "Mustermann",
    verified: bool = True,
    proofing: str = "low",
) -> int:
    """An account; returns its id."""
    now = clock.now(db)
    with db.unit_of_work() as session:
        row = Account(
            subject=secrets.token_urlsafe(16),
            email=email or f"{secrets.token_hex(4)}@example.de",
            email_verified_at=now if verified else None,
            proofing_level=proofing,
            given_name=given_name,
            family_name=family_name,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row.id


PASSWORD = "correct horse battery staple"


def password_account(db: Database, settings: Settings, email: str | None = None) -> tuple[str, str]:
    """A verified account that logs in with a password; returns (email, password)."""
    email = email or f"{secrets.token_hex(4)}@example.de"
    with db.unit_of_work() as session:
        create_account(session, settings, email=email, password=PASSWORD, verified=True)
    return email, PASSWORD


def login_token(db: Database, account_id: int, settings: Settings) -> str:
    """Open a password session for the account; returns the cookie token."""
    with db.unit_of_work() as session:
        opened = open_login_session(
            session,
            settings,
            CITIZEN,
            account_id,
            PASSWORD_ONLY,
            ip=None,
            user_agent=None,
            replacing=None,
        )
        return opened.token


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_fields(html: str) -> dict[str, str]:
    """The hidden fields of the first form on a page."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


class Browser:
    """A person's browser against the IdP: follows the IdP's redirects, stops at the client."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=10)
        self.pages: list[str] = []

    def log_in(self, token: str) -> None:
        """Carry a session cookie (as if the citizen had logged in)."""
        self.http.cookies.set("idp_session", token)

    def open(
        self,
        url: str,
        *,
        consent: str | None = "allow",
        credentials: tuple[str, str] | None = None,
    ) -> httpx.Response:
        """GET ``url`` and follow redirects within the IdP, logging in with ``credentials``
        on the login page and answering the consent page; return the first response that
        leaves the IdP (or a page that needs a person)."""
        response = self.http.get(url)
        for _ in range(12):
            self.pages.append(str(response.url))
            if response.status_code in (302, 303):
                target = urljoin(str(response.url), response.headers["location"])
                if not target.startswith(self.base_url):
                    return response
                response = self.http.get(target)
                continue
            path = urlsplit(str(response.url)).path
            if path == "/login" and credentials and response.status_code == 200:
                email, password = credentials
                fields = {**form_fields(response.text), "email": email, "password": password}
                response = self.http.post("/login", data=fields)
                credentials = None  # once: a second login page means it failed
                continue
            if path == "/consent" and consent and response.status_code == 200:
                response = self.http.post(
                    "/consent", data={**form_fields(response.text), "decision": consent}
                )
                continue
            return response
        raise AssertionError(f"redirect loop: {self.pages}")


def callback_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect to the client."""
    assert response.status_code in (302, 303), response.text[:500]
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}
