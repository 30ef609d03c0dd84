"""The demo portal app under /demo (development only): a real relying party in-process.

It uses authlib's OAuth2Client against this service's own issuer, over HTTP,
exactly as a portal app would: discovery, PKCE S256, state, nonce, the ID
token checked against the JWKS, userinfo, RP-initiated logout. Its state
(pending logins, signed-in visitors) lives in memory: it is a demo.
"""

from __future__ import annotations

import secrets
import threading
import warnings
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning

# authlib 1.9 points its httpx integration at an "httpx2" package that is not
# released on PyPI; the integration works as it is, so the notice is only noise.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Request, Response
from litestar.response import Redirect

from idp.oidc.demo import CLIENT_ID, EMAIL, PASSWORD
from idp.web.errors import PageError
from idp.web.handlers import get
from idp.web.rendering import render

COOKIE = "idp_demo"
SCOPE = "openid profile email"


class DemoStore:
    """Pending logins and signed-in visitors of the demo app, by cookie value."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, dict[str, str]] = {}
        self.visitors: dict[str, dict[str, Any]] = {}


STORE = DemoStore()


def _visitor(request: Request) -> dict[str, Any] | None:
    with STORE.lock:
        return STORE.visitors.get(request.cookies.get(COOKIE, ""))


def _oauth(issuer: str) -> OAuth2Client:
    return OAuth2Client(
        CLIENT_ID,
        scope=SCOPE,
        redirect_uri=f"{issuer}/demo/callback",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",  # noqa: S106 - a public client has no secret
        timeout=10,
    )


@get("/demo", sync_to_thread=False)
def demo_home(request: Request) -> Response:
    """The portal app's start page: log in, or what it learnt about you."""
    return _page(request, _visitor(request))


def _page(request: Request, visitor: dict[str, Any] | None, error: Any = None) -> Response:
    context = {"visitor": visitor, "error": error, "email": EMAIL, "password": PASSWORD}
    return render(request, "demo.html", context, headers={"Cache-Control": "no-store"})


@get("/demo/login", sync_to_thread=False)
def demo_login(request: Request) -> Response:
    """Start a login: PKCE, state and nonce, then off to /authorize."""
    issuer = request.app.state.services.settings.issuer
    verifier = generate_token(48)
    nonce = generate_token(20)
    with _oauth(issuer) as oauth:
        url, state = oauth.create_authorization_url(
            f"{issuer}/authorize", code_verifier=verifier, nonce=nonce
        )
    key = request.cookies.get(COOKIE) or secrets.token_urlsafe(16)
    with STORE.lock:
        STORE.pending[key] = {"state": state, "nonce": nonce, "verifier": verifier}
    response = Redirect(url, status_code=303)
    response.set_cookie(COOKIE, key, path="/demo", httponly=True, samesite="lax")
    return response


@get("/demo/callback", sync_to_thread=True)
def demo_callback(request: Request) -> Response:
    """Back from the service: redeem the code, check the ID token, ask userinfo."""
    key = request.cookies.get(COOKIE, "")
    with STORE.lock:
        pending = STORE.pending.pop(key, None)
    if pending is None or request.query_params.get("state") != pending["state"]:
        raise PageError(400, "demo.bad_state")
    if "error" in request.query_params:
        return _page(request, None, dict(request.query_params))
    issuer = request.app.state.services.settings.issuer
    with _oauth(issuer) as oauth:
        token = oauth.fetch_token(
            f"{issuer}/token",
            authorization_response=str(request.url),
            code_verifier=pending["verifier"],
        )
        userinfo = oauth.get(f"{issuer}/userinfo").json()
    try:
        keys = KeySet.import_key_set(httpx.get(f"{issuer}/jwks.json", timeout=10).json())
        claims = jwt.decode(token["id_token"], keys, algorithms=["RS256", "ES256"]).claims
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": CLIENT_ID},
            nonce={"essential": True, "value": pending["nonce"]},
        ).validate(claims)
    except JoseError:
        raise PageError(400, "demo.bad_id_token") from None
    with STORE.lock:
        STORE.visitors[key] = {
            "claims": claims,
            "userinfo": userinfo,
            "id_token": token["id_token"],
        }
    return Redirect("/demo", status_code=303)


@get("/demo/logout", sync_to_thread=False)
def demo_logout(request: Request) -> Response:
    """RP-initiated logout: forget the visitor here, then at the service."""
    issuer = request.app.state.services.settings.issuer
    with STORE.lock:
        visitor = STORE.visitors.pop(request.cookies.get(COOKIE, ""), None)
    if visitor is None:
        return Redirect("/demo", status_code=303)
    query = urlencode(
        {"id_token_hint": visitor["id_token"], "post_logout_redirect_uri": f"{issuer}/demo"}
    )
    return Redirect(f"/end-session?{query}", status_code=303)


ROUTES = [demo_home, demo_login, demo_callback, demo_logout]
