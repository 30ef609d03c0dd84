"""Claims: which scope releases which standard claim, from what the account holds.

Only data the account has is released (no empty or invented values), and
self-asserted data is never marked verified: ``email_verified`` is true only
once the citizen confirmed the address. The ``claims`` request parameter
(OIDC Core 5.5) can ask for individual claims for the ID token or userinfo;
it never releases a claim outside the granted scopes' claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from idp import bounded_json
from idp.db.models import Account
from idp.oidc.clients import RegisteredClient

# OpenID Connect Core 5.4.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": (
        "name",
        "family_name",
        "given_name",
        "middle_name",
        "nickname",
        "preferred_username",
        "profile",
        "picture",
        "website",
        "gender",
        "birthdate",
        "zoneinfo",
        "locale",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}
CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "name",
    "given_name",
    "family_name",
    "locale",
    "updated_at",
    "email",
    "email_verified",
    "verified_claims",
)


class InvalidClaimsParameter(ValueError):
    """The ``claims`` parameter is not a JSON object of the shape OIDC Core 5.5 defines."""


def parse_claims_parameter(value: str | None) -> dict[str, Any] | None:
    """The ``claims`` request parameter as a dict, or None when absent."""
    if not value:
        return None
    try:
        claims = bounded_json.loads(value)
    except bounded_json.TooDeep:
        raise InvalidClaimsParameter("The 'claims' parameter is nested too deeply.") from None
    except ValueError:
        raise InvalidClaimsParameter("The 'claims' parameter is not valid JSON.") from None
    if not isinstance(claims, dict):
        raise InvalidClaimsParameter("The 'claims' parameter must be a JSON object.")
    for member in ("userinfo", "id_token"):
        requested = claims.get(member)
        if requested is None:
            continue
        if not isinstance(requested, dict) or not all(
            v is None or isinstance(v, dict) for v in requested.values()
        ):
            raise InvalidClaimsParameter(f"'claims.{member}' must map claim names to objects.")
    return claims


def subject(account: Account, client: RegisteredClient, pairwise_key: bytes) -> str:
    """The ``sub`` this client sees: the account's public subject or a pairwise one (OIDC 8.1)."""
    if client.subject_type != "pairwise":
        return account.subject
    return pairwise_subject(account.subject, client.sector_identifier or "", pairwise_key)


def pairwise_subject(public_subject: str, sector: str, key: bytes) -> str:
    """A stable per-sector identifier that sectors cannot correlate without the key."""
    mac = hmac.new(key, f"{sector}\0{public_subject}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def account_claims(account: Account) -> dict[str, Any]:
    """Every standard claim the account has a value for."""
    claims: dict[str, Any] = {}
    if account.given_name:
        claims["given_name"] = account.given_name
    if account.family_name:
        claims["family_name"] = account.family_name
    name = " ".join(n for n in (account.given_name, account.family_name) if n)
    if name:
        claims["name"] = name
    if account.locale:
        claims["locale"] = account.locale
    claims["updated_at"] = int(account.updated_at.timestamp())
    claims["email"] = account.email
    claims["email_verified"] = account.email_verified_at is not None
    return claims


def allowed_claims(scope: str) -> set[str]:
    """The claim names the granted scopes allow."""
    names: set[str] = set()
    for item in scope.split():
        names.update(SCOPE_CLAIMS.get(item, ()))
    return names


def release(
    account: Account,
    scope: str,
    *,
    by_scope: bool,
    requested: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims to release: all of the scopes' claims (``by_scope``) or only the requested.

    Userinfo answers by scope plus individually requested claims; the ID token
    carries only claims requested for it with the ``claims`` parameter, since an
    access token is issued too (OIDC Core 5.4).
    """
    available = account_claims(account)
    allowed = allowed_claims(scope)
    names = set(allowed) if by_scope else set()
    names.update(name for name in (requested or {}) if name in allowed)
    return {name: value for name, value in available.items() if name in names}
