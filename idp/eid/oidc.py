"""The eID over OpenID Connect: this service as a relying party of an upstream eID service.

:class:`OidcConnector` implements :class:`idp.eid.connector.Connector` with the
authorization code flow: discovery (fetched, checked to name the configured issuer,
cached), PKCE S256, ``state`` and ``nonce`` of 256 bits each, ``acr_values``, the
authorization response's ``iss`` (RFC 9207), the code redeemed with
``client_secret_basic`` or ``private_key_jwt`` (authlib's client), the ID token checked
with joserfc (signature against the upstream's JWKS, fetched again once for an unknown
``kid``; ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``, ``acr``), userinfo read
(its ``sub`` must be the ID token's), and the upstream's claims mapped to ours by one
table (:data:`CLAIMS`; ``IDP_EID_CLAIMS`` replaces it).

Every call to the upstream is awaited through httpx and bounded by
``IDP_EID_TIMEOUT_SECONDS``: the event loop is never blocked, and a slow upstream ends as
:class:`EidUnavailable`, never as a hanging request. Nothing here knows the simulator.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from idp import clock
from idp.eid.connector import (
    DOCUMENT_TYPES,
    IDCARD,
    RESIDENCE_PERMIT,
    UNION_CITIZEN_CARD,
    Address,
    EidResult,
    EidStart,
    PendingEid,
    Place,
)
from idp.eid.errors import (
    ACCESS_DENIED,
    CARD_INVALID,
    LOGIN_REQUIRED,
    ONLINE_FUNCTION_INACTIVE,
    OTHER,
    PIN_BLOCKED,
    EidCancelled,
    EidFailure,
    EidInvalidResponse,
    EidStateInvalid,
    EidUnavailable,
    EidUpstreamError,
)
from idp.settings import Settings

# authlib 1.9 points its httpx integration at an "httpx2" package that is not released on
# PyPI; the integration works with httpx as it is, so the notice is only noise.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

NAME = "oidc"

# The upstream's claim names (left) -> our attributes (idp.eid.connector.ATTRIBUTES).
# The values are read as OpenID Connect and Identity Assurance define them where they
# do (names, birthdate, the structured address); `place_of_birth` may be a string (as
# the card holds it) or an object with `locality` and `country`; `nationality` a
# string or a list; `document_type` and `issuing_state` as the card's data groups.
CLAIMS: dict[str, str] = {
    "family_name": "family_name",
    "given_name": "given_name",
    "birth_name": "birth_family_name",
    "academic_title": "academic_title",
    "birthdate": "birthdate",
    "place_of_birth": "place_of_birth",
    "address": "address",
    "nationality": "nationalities",
    "document_type": "document_type",
    "issuing_state": "issuing_state",
}

# The document types as the card reports them (BSI TR-03127 DocumentType: "ID" the
# identity card, "AR"/"AS"/"AF" the residence permit's kinds, "UB" the eID card for EU
# and EEA citizens) -> ours; our own names are taken as they are.
DOCUMENT_TYPE_CODES: dict[str, str] = {
    "ID": IDCARD,
    "AR": RESIDENCE_PERMIT,
    "AS": RESIDENCE_PERMIT,
    "AF": RESIDENCE_PERMIT,
    "UB": UNION_CITIZEN_CARD,
    **{name: name for name in DOCUMENT_TYPES},
}

# The authorization response's `error` -> our code (idp.eid.errors). RFC 6749 names
# the first ones; how an eID service words a blocked PIN or a switched-off online
# function is its own: adjust these rows to the upstream. Any other error is OTHER.
ERROR_CODES: dict[str, str] = {
    "access_denied": ACCESS_DENIED,
    "login_required": LOGIN_REQUIRED,
    "interaction_required": LOGIN_REQUIRED,
    "pin_blocked": PIN_BLOCKED,
    "online_function_inactive": ONLINE_FUNCTION_INACTIVE,
    "card_invalid": CARD_INVALID,
}
# Errors that mean the upstream itself is failing, not the citizen's card.
UNAVAILABLE_ERRORS = frozenset({"server_error", "temporarily_unavailable"})

# ICAO 9303 codes that differ from ISO 3166-1 alpha-3 for a nationality or a country.
ICAO_TO_ISO = {"D": "DEU"}

# Asymmetric algorithms only: an HMAC-signed ID token would be keyed with our secret.
SIGNING_ALGORITHMS = ["RS256", "PS256", "ES256", "ES384"]
# Clock skew tolerated between the upstream and us for `exp` and `iat`.
LEEWAY_SECONDS = 60
# How long discovery is trusted before it is read again.
DISCOVERY_SECONDS = 3600
# Lifetime of our private_key_jwt client assertion.
ASSERTION_SECONDS = 60

_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_ISO_COUNTRY = re.compile(r"[A-Z]{3}")
_ICAO_STATE = re.compile(r"[A-Z]{1,3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class OidcConnector:
    """An OpenID Connect eID service as upstream (see the module docstring)."""

    name = NAME

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str = "",
        private_key_file: Path | None = None,
        scopes: str = "openid",
        acr: str = "",
        timeout: float = 10.0,
        claims: Mapping[str, str] | None = None,
        now: Callable[[], datetime] = clock.SYSTEM.now,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.scopes = scopes
        self.acr = acr
        self.timeout = timeout
        self.claim_names = dict(claims or CLAIMS)
        self._secret = client_secret
        self._client_key = _client_key(private_key_file) if private_key_file else None
        self._now = now
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._keys: KeySet | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, now: Callable[[], datetime] | None = None
    ) -> OidcConnector:
        """The connector that the ``IDP_EID_*`` settings describe, on the clock ``now`` (the
        system's by default; the service passes its database's)."""
        return cls(
            now=now or clock.SYSTEM.now,
            issuer=settings.eid_issuer,
            client_id=settings.eid_client_id,
            client_secret=settings.eid_client_secret,
            private_key_file=settings.eid_private_key_file,
            scopes=settings.eid_scopes,
            acr=settings.eid_acr,
            timeout=settings.eid_timeout_seconds,
            claims=dict(settings.eid_claims) or None,
        )

    async def start(self, redirect_uri: str, *, locale: str | None = None) -> EidStart:
        """The upstream's authorization URL with fresh state, nonce and PKCE verifier."""
        metadata = await self._metadata()
        pending = PendingEid(
            connector=self.name,
            issuer=self.issuer,
            state=secrets.token_urlsafe(32),
            redirect_uri=redirect_uri,
            created_at=self._now(),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
        )
        extra = {
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        if self.acr:
            extra["acr_values"] = self.acr
        if locale:
            extra["ui_locales"] = locale
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=pending.state,
            **extra,
        )
        return EidStart(url=url, pending=pending)

    async def finish(self, params: Mapping[str, str], pending: PendingEid) -> EidResult:
        """Check the callback, redeem its code, check the ID token, read userinfo, map."""
        self._check_callback(params, pending)
        metadata = await self._metadata()
        self._check_iss_parameter(params, metadata)
        if params.get("error"):
            raise _reported(params["error"], params.get("error_description", ""))
        code = params.get("code")
        if not code:
            raise EidInvalidResponse("no_code", "the callback has neither a code nor an error")
        async with self._http() as http, self._oauth(metadata) as oauth:
            token = await self._redeem(oauth, metadata, code, pending)
            claims = await self._id_token_claims(http, metadata, token, pending)
            if metadata.get("userinfo_endpoint") and token.get("access_token"):
                info = await self._userinfo(http, metadata, token["access_token"], claims["sub"])
                claims = {**info, **claims}  # what the signed ID token says wins
        return self._result(claims)

    # -- the callback ------------------------------------------------------------------

    def _check_callback(self, params: Mapping[str, str], pending: PendingEid) -> None:
        if pending.connector != self.name or pending.issuer != self.issuer:
            raise EidStateInvalid("other_upstream", "the flow was started with another eID service")
        state = params.get("state") or ""
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise EidStateInvalid("state_mismatch", "the callback's state is not the flow's")

    def _check_iss_parameter(self, params: Mapping[str, str], metadata: Mapping[str, Any]) -> None:
        """RFC 9207: a callback naming another issuer is a mix-up; one that must name it, does."""
        iss = params.get("iss")
        if iss is not None and iss != self.issuer:
            raise EidInvalidResponse("wrong_iss_parameter", "the callback names another issuer")
        if iss is None and metadata.get("authorization_response_iss_parameter_supported") is True:
            raise EidInvalidResponse("missing_iss_parameter", "the callback names no issuer")

    # -- calls to the upstream ---------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout)

    def _oauth(self, metadata: Mapping[str, Any]) -> AsyncOAuth2Client:
        if self._client_key is None:
            return AsyncOAuth2Client(
                self.client_id,
                self._secret,
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                timeout=self.timeout,
            )
        key, alg = self._client_key
        client = AsyncOAuth2Client(
            self.client_id,
            key,
            token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - a method name
            timeout=self.timeout,
        )
        client.register_client_auth_method(_ShortLivedKeyJWT(metadata["token_endpoint"], alg))
        return client

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Run an exchange with the upstream's ``what`` within the timeout; turn transport
        failures and 5xx answers into EidUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except (TimeoutError, httpx.TimeoutException):
            raise EidUnavailable(
                "timeout", f"the eID service's {what} did not answer within {self.timeout} s"
            ) from None
        except httpx.HTTPStatusError as exc:
            raise _status_failure(what, exc.response.status_code) from None
        except httpx.HTTPError as exc:
            raise EidUnavailable(
                "unreachable", f"cannot reach the eID service's {what} ({type(exc).__name__})"
            ) from None

    async def _get_json(
        self, http: httpx.AsyncClient, url: str, what: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        async with self._bounded(what):
            response = await http.get(url, headers=headers)
        if response.status_code != 200:
            raise _status_failure(what, response.status_code)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise EidInvalidResponse("bad_answer", f"the eID service's {what} is not a JSON object")
        return document

    async def _metadata(self) -> dict[str, Any]:
        """The upstream's discovery document, read again after DISCOVERY_SECONDS."""
        cached = self._discovery
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_SECONDS:
            return cached[1]
        async with self._http() as http:
            document = await self._get_json(
                http, f"{self.issuer}/.well-known/openid-configuration", "discovery"
            )
        if document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 4.3: else another provider could stand in for it.
            raise EidInvalidResponse("discovery_issuer", "discovery names another issuer")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(endpoint)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise EidInvalidResponse("discovery_incomplete", f"discovery has no {endpoint}")
        self._discovery = (time.monotonic(), document)
        return document

    async def _redeem(
        self,
        oauth: AsyncOAuth2Client,
        metadata: Mapping[str, Any],
        code: str,
        pending: PendingEid,
    ) -> dict[str, Any]:
        try:
            async with self._bounded("token endpoint"):
                token = await oauth.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=pending.redirect_uri,
                    code_verifier=pending.code_verifier,
                )
        except OAuthError as exc:
            raise EidInvalidResponse(
                "token_refused", f"the token endpoint refused the code: {exc.error!r}"
            ) from None
        except ValueError:  # authlib: the answer is not a JSON object
            raise EidInvalidResponse(
                "bad_answer", "the eID service's token endpoint answered no JSON object"
            ) from None
        return dict(token)

    async def _key_set(
        self, http: httpx.AsyncClient, metadata: Mapping[str, Any], *, again: bool = False
    ) -> KeySet:
        if self._keys is None or again:
            document = await self._get_json(http, metadata["jwks_uri"], "keys")
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise EidInvalidResponse("bad_keys", "the eID service's JWKS is unusable") from None
        return self._keys

    async def _id_token_claims(
        self,
        http: httpx.AsyncClient,
        metadata: Mapping[str, Any],
        token: Mapping[str, Any],
        pending: PendingEid,
    ) -> dict[str, Any]:
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise EidInvalidResponse("no_id_token", "the token response has no ID token")
        try:
            claims = _verified(id_token, await self._key_set(http, metadata))
        except InvalidKeyIdError:
            # The upstream may have rotated its keys since they were cached: ask once more.
            try:
                claims = _verified(id_token, await self._key_set(http, metadata, again=True))
            except InvalidKeyIdError:
                raise EidInvalidResponse(
                    "unknown_kid", "no key of the eID service signed the ID token"
                ) from None
        self._check_claims(claims, pending)
        return claims

    def _check_claims(self, claims: Mapping[str, Any], pending: PendingEid) -> None:
        now = self._now().timestamp()
        if claims.get("iss") != self.issuer:
            raise EidInvalidResponse("wrong_iss", "the ID token is from another issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise EidInvalidResponse("wrong_aud", "the ID token is not meant for this service")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            raise EidInvalidResponse("wrong_azp", "the ID token was issued to another party")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not _is_time(exp) or not _is_time(iat):
            raise EidInvalidResponse("malformed_id_token", "the ID token lacks exp or iat")
        if exp + LEEWAY_SECONDS <= now:
            raise EidInvalidResponse("expired", "the ID token has expired")
        if iat > now + LEEWAY_SECONDS:
            raise EidInvalidResponse("issued_in_future", "the ID token is issued in the future")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), pending.nonce.encode()
        ):
            raise EidInvalidResponse("wrong_nonce", "the ID token's nonce is not the flow's")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 255:
            raise EidInvalidResponse("no_sub", "the ID token has no usable sub")
        if self.acr and claims.get("acr") != self.acr:
            raise EidInvalidResponse("wrong_acr", f"the identification was not at {self.acr}")

    async def _userinfo(
        self, http: httpx.AsyncClient, metadata: Mapping[str, Any], access_token: str, sub: str
    ) -> dict[str, Any]:
        info = await self._get_json(
            http,
            metadata["userinfo_endpoint"],
            "userinfo",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if info.get("sub") != sub:
            # OpenID Connect Core 5.3.2: else the answer may be about someone else.
            raise EidInvalidResponse("userinfo_sub", "userinfo is about another subject")
        return info

    # -- mapping ----------------------------------------------------------------------

    def _result(self, claims: Mapping[str, Any]) -> EidResult:
        values: dict[str, Any] = {}
        for theirs, ours in self.claim_names.items():
            if claims.get(theirs) not in (None, "", [], {}):
                values.setdefault(ours, claims[theirs])
        return EidResult(
            issuer=self.issuer,
            pseudonym=claims["sub"],
            family_name=_text(values, "family_name", required=True),
            given_name=_text(values, "given_name", required=True),
            birth_family_name=_text(values, "birth_family_name"),
            academic_title=_text(values, "academic_title"),
            birthdate=_birthdate(values.get("birthdate")),
            place_of_birth=_place(values.get("place_of_birth")),
            address=_address(values.get("address")),
            nationalities=_nationalities(values.get("nationalities")),
            document_type=_document_type(values.get("document_type")),
            issuing_state=_issuing_state(values.get("issuing_state")),
            acr=claims.get("acr") if isinstance(claims.get("acr"), str) else None,
        )


class _ShortLivedKeyJWT(PrivateKeyJWT):
    """private_key_jwt with an assertion valid for ASSERTION_SECONDS (authlib's default is
    an hour; providers such as this one refuse long-lived assertions)."""

    def __init__(self, token_endpoint: str, alg: str) -> None:
        super().__init__(token_endpoint, alg=alg)

    def sign(self, auth: Any, token_endpoint: str) -> str:
        key = auth.client_secret
        return private_key_jwt_sign(
            key,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header={"kid": key.kid},
            expires_in=ASSERTION_SECONDS,
        )


def _client_key(path: Path) -> tuple[RSAKey | ECKey, str]:
    """Our private_key_jwt key (checked by the settings) and its algorithm."""
    pem = path.read_bytes()
    try:
        key: RSAKey | ECKey = ECKey.import_key(pem)
        alg = "ES256"
    except (JoseError, ValueError):
        key, alg = RSAKey.import_key(pem), "RS256"
    key.ensure_kid()
    return key, alg


def _verified(id_token: str, keys: KeySet) -> dict[str, Any]:
    """The ID token's claims if one of ``keys`` signed it; InvalidKeyIdError if none has
    its ``kid``."""
    try:
        return dict(jwt.decode(id_token, keys, algorithms=SIGNING_ALGORITHMS).claims)
    except InvalidKeyIdError:
        raise
    except BadSignatureError:
        raise EidInvalidResponse("bad_signature", "the ID token's signature is wrong") from None
    except (JoseError, ValueError, TypeError):
        raise EidInvalidResponse(
            "malformed_id_token", "the ID token is malformed or uses an algorithm not accepted"
        ) from None


def _status_failure(what: str, status: int) -> EidFailure:
    if status >= 500:
        return EidUnavailable("server_error", f"the eID service's {what} answered HTTP {status}")
    return EidInvalidResponse("bad_answer", f"the eID service's {what} answered HTTP {status}")


def _reported(error: str, description: str) -> EidFailure:
    """The failure for an authorization response's ``error``."""
    said = f"the eID service reported {error[:64]!r}: {description[:200]!r}"
    if error in UNAVAILABLE_ERRORS:
        return EidUnavailable("server_error", said)
    code = ERROR_CODES.get(error, OTHER)
    if code == ACCESS_DENIED:
        return EidCancelled(said)
    return EidUpstreamError(code, said)


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _attribute_error(name: str, problem: str) -> EidInvalidResponse:
    return EidInvalidResponse("attributes", f"{name} {problem}")


def _text(values: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = values.get(name)
    if value is None:
        if required:
            raise _attribute_error(name, "is missing")
        return None
    if not isinstance(value, str):
        raise _attribute_error(name, "is not text")
    line = _line(value, name)
    return _required(name, line) if required else line or None


def _required(name: str, value: str) -> str:
    if not value:
        raise _attribute_error(name, "is empty")
    return value


def _birthdate(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _attribute_error("birthdate", "is not YYYY-MM-DD (or YYYY-MM, YYYY)")
    if len(value) == 10:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise _attribute_error("birthdate", "is not a date") from None
    return value


def _country(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _attribute_error(name, "is not a country code")
    return _country_code(value, name)


def _country_code(value: str, name: str) -> str:
    """ISO 3166-1 alpha-3 for an ICAO 9303 code (the same but for Germany's "D")."""
    code = ICAO_TO_ISO.get(value.strip().upper(), value.strip().upper())
    if not _ISO_COUNTRY.fullmatch(code):
        raise _attribute_error(name, "is not a country code")
    return code


def _place(value: Any) -> Place | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Place(locality=_required("place_of_birth", _line(value, "place_of_birth")))
    if isinstance(value, Mapping):
        locality = value.get("locality")
        if not isinstance(locality, str) or not locality.strip():
            raise _attribute_error("place_of_birth", "has no locality")
        return Place(
            locality=_line(locality, "place_of_birth"),
            country=_country(value.get("country"), "place_of_birth"),
        )
    raise _attribute_error("place_of_birth", "is neither text nor an object")


def _line(value: str, name: str) -> str:
    if len(value) > 255 or _CONTROL.search(value):
        raise _attribute_error(name, "is not a line of text")
    return value.strip()


def _address(value: Any) -> Address | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _attribute_error("address", "is not a structured address")
    parts: dict[str, str | None] = {}
    for part in ("street_address", "postal_code", "locality"):
        raw = value.get(part)
        if raw is None:
            parts[part] = None
        elif isinstance(raw, str):
            parts[part] = _line(raw, "address") or None
        else:
            raise _attribute_error("address", f"has a {part} that is not text")
    return Address(**parts, country=_country(value.get("country"), "address"))


def _nationalities(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _attribute_error("nationalities", "is neither a code nor a list of codes")
    return tuple(dict.fromkeys(_country_code(item, "nationalities") for item in items))


def _document_type(value: Any) -> str | None:
    if value is None:
        return None
    kind = DOCUMENT_TYPE_CODES.get(value) if isinstance(value, str) else None
    if kind is None:
        raise _attribute_error("document_type", "is not a document with an online function")
    return kind


def _issuing_state(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ICAO_STATE.fullmatch(value.strip().upper()):
        raise _attribute_error("issuing_state", "is not an ICAO 9303 state code")
    return value.strip().upper()
