"""The demo portal app's registration (development only): a public client and an account.

``idp demo`` (run by ``make run``) registers the client ``demo-portal`` whose
pages the same process serves under ``/demo`` (idp/web/demo.py), and a
verified demo account, so a newcomer can click through login at once.
Running it again brings the redirect URIs in line with the current issuer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts.registration import create_account
from idp.db.models import Account, Client
from idp.oidc.clients import PUBLIC_METHOD, SCOPES, add_client, update_client
from idp.settings import Settings

CLIENT_ID = "demo-portal"
EMAIL = "demo@example.de"
PASSWORD = "Demo-Passwort-2026"  # noqa: S105 - the documented password of the demo account


@dataclass(frozen=True)
class Demo:
    client_id: str
    email: str
    password: str
    url: str


def registration(settings: Settings) -> dict[str, object]:
    """The demo client's registration for this issuer."""
    return {
        "name": "Demo-Portal",
        "token_endpoint_auth_method": PUBLIC_METHOD,
        "redirect_uris": [f"{settings.issuer}/demo/callback"],
        "post_logout_redirect_uris": [f"{settings.issuer}/demo"],
        "scopes": list(SCOPES),
        "grant_types": ["authorization_code", "refresh_token"],
    }


def ensure_demo(session: Session, settings: Settings) -> Demo:
    """Register (or refresh) the demo client and create the demo account if missing."""
    fields = registration(settings)
    if session.get(Client, CLIENT_ID) is None:
        add_client(session, client_id=CLIENT_ID, actor="demo", **fields)
    else:
        update_client(session, CLIENT_ID, actor="demo", **fields)
    if session.scalar(select(Account.id).where(Account.email == EMAIL)) is None:
        create_account(session, settings, email=EMAIL, password=PASSWORD, verified=True)
    return Demo(CLIENT_ID, EMAIL, PASSWORD, f"{settings.issuer}/demo")
