"""The OpenID Foundation's Basic OP plan (oidcc-basic-certification-test-plan) as pytest.

One test per module of the plan, against a real server on loopback, driven as
the suite drives an OP: a registered confidential client, a browser that logs
in through the real login page, the token endpoint, userinfo and the JWKS.
What each module checks is taken from the plan's published module
descriptions; the code is ours.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc import factories

REDIRECT_URI = "https://rp.example.de/callback"
OTHER_REDIRECT_URI = "https://rp.example.de/other"


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class Result:
    """What one authorization returned: the callback's parameters and, if redeemed, tokens."""

    params: dict[str, str]
    tokens: dict[str, Any] = field(default_factory=dict)
    id_token: dict[str, Any] = field(default_factory=dict)
    id_header: dict[str, Any] = field(default_factory=dict)


class OP:
    """The OP under test with one registered client, as the conformance suite sees it."""

    def __init__(self, server: Any, db: Any) -> None:
        self.server = server
        self.url = server.url
        self.metadata = httpx.get(f"{self.url}/.well-known/openid-configuration").json()
        self.keys = KeySet.import_key_set(httpx.get(self.metadata["jwks_uri"]).json())
        self.client = factories.client(
            db,
            name="OIDF conformance",
            redirect_uris=[REDIRECT_URI, OTHER_REDIRECT_URI],
            first_party=True,
        )
        self.credentials = factories.password_account(db, server.settings)
        self.browser = factories.Browser(self.url)

    def authorize_url(self, **params: Any) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
        }
        query.update(params)
        query = {k: v for k, v in query.items() if v is not None}
        return f"{self.metadata['authorization_endpoint']}?{urlencode(query)}"

    def authorize(self, *, login: bool = True, **params: Any) -> Result:
        """Run the front channel; log in on the login page if it is shown."""
        url = self.authorize_url(**params)
        response = self.browser.open(url, credentials=self.credentials if login else None)
        return Result(factories.callback_params(response))

    def redeem(self, result: Result, *, auth: str = "basic", **extra: Any) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": result.params["code"],
            "redirect_uri": REDIRECT_URI,
            **extra,
        }
        if auth == "post":
            data.update(client_id=self.client.client_id, client_secret=self.client.client_secret)
            return httpx.post(self.metadata["token_endpoint"], data=data)
        return httpx.post(
            self.metadata["token_endpoint"],
            data=data,
            auth=(self.client.client_id, self.client.client_secret),
        )

    def flow(self, *, nonce: str | None = "n-0S6_WzA2Mj", **params: Any) -> Result:
        """A whole code flow with the ID token validated as OIDC Core 3.1.3.7 asks."""
        result = self.authorize(nonce=nonce, **params)
        assert "code" in result.params, result.params
        assert result.params["iss"] == self.metadata["issuer"]
        response = self.redeem(result)
        assert response.status_code == 200, response.text
        result.tokens = response.json()
        token = jwt.decode(result.tokens["id_token"], self.keys)
        result.id_header = token.header
        claims = token.claims
        assert token.header["alg"] in self.metadata["id_token_signing_alg_values_supported"]
        # Tests move the service's clock forward; a relying party allows for skew.
        jwt.JWTClaimsRegistry(
            leeway=300,
            iss={"essential": True, "value": self.metadata["issuer"]},
            aud={"essential": True, "value": self.client.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(claims)
        if nonce is None:
            assert "nonce" not in claims
        else:
            assert claims["nonce"] == nonce
        result.id_token = claims
        return result

    def userinfo(self, access_token: str) -> httpx.Response:
        return httpx.get(
            self.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}
        )


@pytest.fixture
def op(live_server, db) -> OP:
    return OP(live_server, db)
