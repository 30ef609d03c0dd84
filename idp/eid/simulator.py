"""The eID simulator: a small OpenID Connect provider that plays the upstream eID service.

It lets developers and tests run the real connector (:mod:`idp.eid.oidc`) end to end
over HTTP without an ID card: discovery, JWKS, authorize, token, userinfo, signed ID
tokens. Its authorization page lists test persons (:data:`PERSONS`: the German test
card's Erika Mustermann and people for the edge cases), a form to enter attributes, and
buttons to cancel or to fail as a blocked PIN or a switched-off online function would.
It works without JavaScript, in German and English. Each person has a stable pseudonym
(``sub``) per client and card; the "new card" choice gives a renewed card's new one.

It identifies anyone as anyone, so it is for development and tests only: its issuer
ends in :data:`EID_SIMULATOR_PATH`, which production refuses as ``IDP_EID_ISSUER``, and
``idp eid-simulator`` refuses to run there.

Test modes: ``hostile=MODE`` on the authorization request makes that identification's
answers wrong in one way (:data:`HOSTILE_MODES`), so that the connector's checks can be
tested over real HTTP: ``bad_signature``, ``unknown_kid`` (signed by a key never
published), ``wrong_iss``, ``wrong_aud``, ``wrong_azp``, ``expired``, ``iat_future``,
``wrong_nonce``, ``userinfo_sub`` (userinfo about someone else), ``server_error`` (the
token endpoint answers 500), ``slow`` (it answers after ``slow_seconds``), and, not
hostile, ``rotated_key`` (signed by a new key that the JWKS publishes from then on).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from litestar import Litestar, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect

from idp.settings import EID_SIMULATOR_PATH, Settings

HIGH = "http://eidas.europa.eu/LoA/high"
CODE_SECONDS = 60
TOKEN_SECONDS = 300
ASSERTION_MAX_SECONDS = 300
HOSTILE_MODES = (
    "bad_signature",
    "unknown_kid",
    "rotated_key",
    "wrong_iss",
    "wrong_aud",
    "wrong_azp",
    "expired",
    "iat_future",
    "wrong_nonce",
    "userinfo_sub",
    "server_error",
    "slow",
)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Pseudonyms are derived under a fixed key: stable across restarts (a card linked in
# development still finds its account), and secret from no one (it is a simulator).
_PSEUDONYM_KEY = b"idp eid simulator pseudonyms"
# The authorization request's parameters carried through the page's forms.
_CARRIED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "ui_locales",
    "acr_values",
    "hostile",
    "lang",
)
_MAX_PARAM = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CODE = re.compile(r"[A-Z]{1,3}")


@dataclass(frozen=True, slots=True)
class Person:
    """A test person as the card holds the data (capitals, with umlauts), and how the page
    names and describes them."""

    key: str
    label: str
    about: Mapping[str, str]
    family_name: str
    given_name: str
    birth_name: str | None = None
    academic_title: str | None = None
    birthdate: str | None = None
    place_of_birth: str | None = None
    street_address: str | None = None
    postal_code: str | None = None
    locality: str | None = None
    country: str = "D"
    nationality: str = "D"
    document_type: str = "ID"  # BSI TR-03127: ID identity card, AR residence permit, UB
    issuing_state: str = "D"

    def claims(self, scopes: set[str]) -> dict[str, Any]:
        """The claims the eID service releases for ``scopes`` (claim names as in
        idp.eid.oidc.CLAIMS): ``profile`` the person, ``address`` the address."""
        claims: dict[str, Any] = {}
        if "profile" in scopes:
            claims.update(
                family_name=self.family_name,
                given_name=self.given_name,
                birth_name=self.birth_name,
                academic_title=self.academic_title,
                birthdate=self.birthdate,
                place_of_birth=self.place_of_birth,
                nationality=self.nationality,
                document_type=self.document_type,
                issuing_state=self.issuing_state,
            )
        if "address" in scopes and (self.street_address or self.locality):
            claims["address"] = {
                k: v
                for k, v in (
                    ("street_address", self.street_address),
                    ("postal_code", self.postal_code),
                    ("locality", self.locality),
                    ("country", self.country),
                )
                if v
            }
        return {k: v for k, v in claims.items() if v is not None}


PERSONS: tuple[Person, ...] = (
    # The German test card (and the specimen ID card): ERIKA MUSTERMANN, née GABLER,
    # born 12 August 1964 in Berlin, Heidestraße 17, 51147 Köln.
    Person(
        key="erika",
        label="Erika Mustermann",
        about={
            "de": "Testausweis: geb. Gabler, geboren am 12.08.1964 in Berlin, wohnt in Köln.",
            "en": "Test card: née Gabler, born 12 August 1964 in Berlin, lives in Cologne.",
        },
        family_name="MUSTERMANN",
        given_name="ERIKA",
        birth_name="GABLER",
        birthdate="1964-08-12",
        place_of_birth="BERLIN",
        street_address="HEIDESTRASSE 17",
        postal_code="51147",
        locality="KÖLN",
    ),
    Person(
        key="max",
        label="Max Mustermann",
        about={
            "de": "Ohne Geburtsort: der Ausweis gibt keinen an.",
            "en": "No place of birth: the card holds none.",
        },
        family_name="MUSTERMANN",
        given_name="MAX",
        birthdate="1983-04-21",
        street_address="ALTE LANDSTRASSE 3",
        postal_code="53111",
        locality="BONN",
    ),
    Person(
        key="jonas",
        label="Jonas Schneider",
        about={
            "de": "Mit Geburtsname: geb. Weber, geboren am 28.02.1990 in Hamburg.",
            "en": "With a birth name: né Weber, born 28 February 1990 in Hamburg.",
        },
        family_name="SCHNEIDER",
        given_name="JONAS",
        birth_name="WEBER",
        birthdate="1990-02-28",
        place_of_birth="HAMBURG",
        street_address="MÖNCKEBERGSTRASSE 7",
        postal_code="20095",
        locality="HAMBURG",
    ),
    Person(
        key="ayse",
        label="Ayşe Yılmaz",
        about={
            "de": "Türkische Staatsangehörige mit elektronischem Aufenthaltstitel, "
            "geboren in İzmir.",
            "en": "Turkish national with an electronic residence permit, born in İzmir.",
        },
        family_name="YILMAZ",
        given_name="AYŞE",
        birthdate="1988-11-03",
        place_of_birth="İZMİR",
        street_address="KÖNIGSTRASSE 12",
        postal_code="70173",
        locality="STUTTGART",
        nationality="TUR",
        document_type="AR",
    ),
    Person(
        key="giulia",
        label="Giulia Rossi",
        about={
            "de": "Italienische Staatsangehörige mit eID-Karte für Unionsbürger.",
            "en": "Italian national with the eID card for EU citizens.",
        },
        family_name="ROSSI",
        given_name="GIULIA",
        birthdate="1995-06-15",
        place_of_birth="NAPOLI",
        street_address="LEOPOLDSTRASSE 40",
        postal_code="80802",
        locality="MÜNCHEN",
        nationality="ITA",
        document_type="UB",
    ),
    Person(
        key="juergen",
        label="Dr. Jürgen Müller-Schönbäck",
        about={
            "de": "Mit Doktorgrad und Umlauten, geboren in Göttingen.",
            "en": "With a doctoral degree and umlauts, born in Göttingen.",
        },
        family_name="MÜLLER-SCHÖNBÄCK",
        given_name="JÜRGEN",
        academic_title="DR.",
        birthdate="1958-03-07",
        place_of_birth="GÖTTINGEN",
        street_address="GRÜNER WEG 5",
        postal_code="37073",
        locality="GÖTTINGEN",
    ),
)

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "title": "eID-Simulator",
        "banner": "eID-Simulator für Entwicklung und Tests: hier wird kein Ausweis gelesen.",
        "language_switch": "English",
        "heading": "Mit dem Online-Ausweis identifizieren",
        "requested_by": "Der Dienst „{client}“ möchte Ihre Identität mit dem Online-Ausweis "
        "prüfen.",
        "card_legend": "Ausweis",
        "card_1": "Bisheriger Ausweis",
        "card_2": "Neuer Ausweis (erneuert: gleiche Daten, neues Pseudonym)",
        "persons_legend": "Testperson wählen",
        "persons_hint": "Jede Schaltfläche gibt die Daten dieser Person weiter, als hätte "
        "sie ihren Ausweis mit der PIN vorgelegt.",
        "other_heading": "Andere Fälle",
        "cancel": "Abbrechen",
        "pin_blocked": "Kartenfehler: PIN gesperrt",
        "online_function_inactive": "Kartenfehler: Online-Ausweisfunktion nicht eingeschaltet",
        "enter_attributes": "Angaben selbst eingeben",
        "form_heading": "Angaben selbst eingeben",
        "form_intro": "Felder mit * sind Pflichtangaben. Namen so, wie sie auf dem Ausweis "
        "stehen; Codes der Staaten nach ICAO (Deutschland: D).",
        "submit": "Mit diesen Angaben fortfahren",
        "back": "Zurück zu den Testpersonen",
        "errors_heading": "Bitte prüfen Sie Ihre Angaben",
        "required": "Bitte ausfüllen.",
        "bad_text": "Bitte höchstens 100 Zeichen in einer Zeile.",
        "bad_date": "Bitte ein Datum als JJJJ-MM-TT angeben, z. B. 1964-08-12.",
        "bad_code": "Bitte einen Code aus 1 bis 3 Großbuchstaben angeben, z. B. D.",
        "bad_request": "Ungültige Anfrage",
        "bad_request_text": "Diese Anfrage kann der eID-Simulator nicht beantworten:",
        "family_name": "Familienname",
        "given_name": "Vornamen",
        "birth_name": "Geburtsname",
        "academic_title": "Doktorgrad",
        "birthdate": "Geburtsdatum (JJJJ-MM-TT)",
        "place_of_birth": "Geburtsort",
        "street_address": "Straße und Hausnummer",
        "postal_code": "Postleitzahl",
        "locality": "Wohnort",
        "country": "Staat der Anschrift",
        "nationality": "Staatsangehörigkeit",
        "document_type": "Dokument",
        "issuing_state": "Ausstellender Staat",
        "doc_ID": "Personalausweis",
        "doc_AR": "Elektronischer Aufenthaltstitel",
        "doc_UB": "eID-Karte für Unionsbürger",
    },
    "en": {
        "title": "eID simulator",
        "banner": "eID simulator for development and tests: no ID card is read here.",
        "language_switch": "Deutsch",
        "heading": "Identify with the online ID card",
        "requested_by": "The service “{client}” asks to check your identity with the "
        "online ID card.",
        "card_legend": "ID card",
        "card_1": "Current card",
        "card_2": "New card (renewed: same data, new pseudonym)",
        "persons_legend": "Choose a test person",
        "persons_hint": "Each button passes on this person's data as if they had presented "
        "their ID card with the PIN.",
        "other_heading": "Other cases",
        "cancel": "Cancel",
        "pin_blocked": "Card error: PIN blocked",
        "online_function_inactive": "Card error: online ID function switched off",
        "enter_attributes": "Enter the data yourself",
        "form_heading": "Enter the data yourself",
        "form_intro": "Fields marked * are required. Names as printed on the card; state "
        "codes as ICAO has them (Germany: D).",
        "submit": "Continue with this data",
        "back": "Back to the test persons",
        "errors_heading": "Please check your entries",
        "required": "Please fill this in.",
        "bad_text": "At most 100 characters on one line, please.",
        "bad_date": "Please give a date as YYYY-MM-DD, e.g. 1964-08-12.",
        "bad_code": "Please give a code of 1 to 3 capital letters, e.g. D.",
        "bad_request": "Invalid request",
        "bad_request_text": "The eID simulator cannot answer this request:",
        "family_name": "Family name",
        "given_name": "Given names",
        "birth_name": "Birth name",
        "academic_title": "Doctoral degree",
        "birthdate": "Date of birth (YYYY-MM-DD)",
        "place_of_birth": "Place of birth",
        "street_address": "Street and number",
        "postal_code": "Postcode",
        "locality": "Town",
        "country": "Country of the address",
        "nationality": "Nationality",
        "document_type": "Document",
        "issuing_state": "Issuing state",
        "doc_ID": "German identity card",
        "doc_AR": "Electronic residence permit",
        "doc_UB": "eID card for EU citizens",
    },
}
_FIELDS = (
    "family_name",
    "given_name",
    "birth_name",
    "academic_title",
    "birthdate",
    "place_of_birth",
    "street_address",
    "postal_code",
    "locality",
    "country",
    "nationality",
    "document_type",
    "issuing_state",
)
_REQUIRED = ("family_name", "given_name")
_CODES = ("country", "nationality", "issuing_state")
_DOCUMENTS = ("ID", "AR", "UB")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass(frozen=True, slots=True)
class SimulatedClient:
    """A relying party the simulator knows: its redirect URIs and how it authenticates
    (a secret for client_secret_basic, a public JWK for private_key_jwt)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    secret: str | None = None
    jwk: Mapping[str, Any] | None = None


@dataclass(slots=True)
class _Grant:
    """An issued code (then its access token): who, for whom, with what."""

    client_id: str
    redirect_uri: str
    scopes: set[str]
    nonce: str
    code_challenge: str
    sub: str
    claims: dict[str, Any]
    hostile: str | None
    expires: float
    auth_time: int = field(default_factory=lambda: int(time.time()))


class _Refused(Exception):
    """A request the simulator cannot answer (shown as a 400 page, never redirected)."""


class Simulator:
    """The simulated eID service: keys, clients, issued codes and tokens, in memory."""

    def __init__(
        self,
        issuer: str,
        clients: list[SimulatedClient],
        *,
        key: ECKey | RSAKey | None = None,
        slow_seconds: float = 3.0,
        persons: tuple[Person, ...] = PERSONS,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.clients = {client.client_id: client for client in clients}
        self.key = key or ECKey.generate_key("P-256")
        self.key.ensure_kid()
        self.slow_seconds = slow_seconds
        self.persons = {person.key: person for person in persons}
        self.requests: Counter[str] = Counter()  # per endpoint, for tests to read
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, _Grant] = {}
        self._jtis: dict[str, float] = {}
        self._rotated: ECKey | RSAKey | None = None
        self._unpublished: ECKey | RSAKey | None = None

    @classmethod
    def from_settings(cls, settings: Settings, issuer: str, key: ECKey | RSAKey) -> Simulator:
        """The simulator for the client the ``IDP_EID_*`` settings describe, returning to
        ``IDP_ISSUER``'s ``/eid/callback``."""
        jwk = None
        if settings.eid_private_key_file is not None:
            private = _load_key(settings.eid_private_key_file)
            jwk = private.as_dict(private=False)
        client = SimulatedClient(
            client_id=settings.eid_client_id,
            redirect_uris=(f"{settings.issuer}/eid/callback",),
            secret=settings.eid_client_secret or None,
            jwk=jwk,
        )
        return cls(issuer, [client], key=key)

    # -- keys and tokens ---------------------------------------------------------------

    def _alg(self, key: ECKey | RSAKey) -> str:
        return "ES256" if isinstance(key, ECKey) else "RS256"

    def jwks(self) -> dict[str, Any]:
        """The published keys: the signing key, and the rotated one once it exists."""
        keys = [self.key] if self._rotated is None else [self.key, self._rotated]
        return {
            "keys": [
                {**key.as_dict(private=False), "use": "sig", "alg": self._alg(key)} for key in keys
            ]
        }

    def _signing_key(self, hostile: str | None) -> ECKey | RSAKey:
        with self._lock:
            if hostile == "rotated_key":
                if self._rotated is None:
                    self._rotated = _new_key_like(self.key)
                return self._rotated
            if hostile == "unknown_kid":
                if self._unpublished is None:
                    self._unpublished = _new_key_like(self.key)
                return self._unpublished
        return self.key

    def id_token(self, grant: _Grant) -> str:
        """The signed ID token for ``grant``, made wrong as its hostile mode asks."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.sub,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "exp": now + TOKEN_SECONDS,
            "iat": now,
            "auth_time": grant.auth_time,
            "nonce": grant.nonce,
            "acr": HIGH,
        }
        match grant.hostile:
            case "wrong_iss":
                claims["iss"] = f"{self.issuer}/another"
            case "wrong_aud":
                claims["aud"] = claims["azp"] = "another-client"
            case "wrong_azp":
                claims["aud"] = [grant.client_id, "another-client"]
                claims["azp"] = "another-client"
            case "expired":
                claims["iat"], claims["exp"] = now - 2 * TOKEN_SECONDS, now - TOKEN_SECONDS
            case "iat_future":
                claims["iat"], claims["exp"] = now + 3600, now + 3600 + TOKEN_SECONDS
            case "wrong_nonce":
                claims["nonce"] = "not-" + grant.nonce
        key = self._signing_key(grant.hostile)
        token = jwt.encode({"alg": self._alg(key), "kid": key.kid, "typ": "JWT"}, claims, key)
        if grant.hostile == "bad_signature":
            token = _spoil_signature(token)
        return token

    def pseudonym(self, client_id: str, person_key: str, card: str) -> str:
        """A card's stable pseudonym for a client (a renewed card is another card)."""
        data = f"{client_id}\x00{person_key}\x00{card}".encode()
        return _b64(hmac.new(_PSEUDONYM_KEY, data, hashlib.sha256).digest())

    # -- authorization ---------------------------------------------------------------

    def authorization(self, params: Mapping[str, str]) -> dict[str, str]:
        """The carried parameters of a valid authorization request; _Refused for a
        request that cannot be answered at its redirect URI, _Redirected for one that
        gets an error there."""
        for name in _CARRIED:
            if len(params.get(name, "")) > _MAX_PARAM:
                raise _Refused(f"{name} is too long")
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise _Refused("unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise _Refused("redirect_uri is not registered for this client")
        carried = {name: params[name] for name in _CARRIED if params.get(name)}
        if params.get("response_type") != "code":
            raise _Redirected(carried, "unsupported_response_type", "only code is supported")
        if "openid" not in params.get("scope", "").split():
            raise _Redirected(carried, "invalid_scope", "openid is required")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            raise _Redirected(carried, "invalid_request", "PKCE with S256 is required")
        if not params.get("nonce"):
            raise _Redirected(carried, "invalid_request", "a nonce is required")
        if params.get("hostile") and params["hostile"] not in HOSTILE_MODES:
            raise _Redirected(carried, "invalid_request", "unknown hostile mode")
        return carried

    def issue_code(self, carried: Mapping[str, str], sub: str, claims: dict[str, Any]) -> str:
        """A single-use code for the identification of ``sub`` with ``claims``."""
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            client_id=carried["client_id"],
            redirect_uri=carried["redirect_uri"],
            scopes=set(carried.get("scope", "").split()),
            nonce=carried["nonce"],
            code_challenge=carried["code_challenge"],
            sub=sub,
            claims=claims,
            hostile=carried.get("hostile"),
            expires=time.time() + CODE_SECONDS,
        )
        with self._lock:
            self._codes[code] = grant
        return code

    # -- token ------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], form: Mapping[str, str]) -> str | None:
        """The client_id the request authenticates as (client_secret_basic or
        private_key_jwt), or None."""
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(authorization[6:], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            client_id, _, secret = raw.partition(":")
            client = self.clients.get(unquote(client_id))
            if client is None or client.secret is None:
                return None
            if hmac.compare_digest(unquote(secret).encode(), client.secret.encode()):
                return client.client_id
            return None
        if form.get("client_assertion_type") == JWT_BEARER and form.get("client_assertion"):
            return self._assertion_client(form["client_assertion"])
        return None

    def _assertion_client(self, assertion: str) -> str | None:
        try:
            unverified = json.loads(_b64decode(assertion.split(".")[1]))
            client = self.clients.get(unverified.get("iss", ""))
            if client is None or client.jwk is None:
                return None
            claims = jwt.decode(
                assertion, KeySet.import_key_set({"keys": [dict(client.jwk)]}), ["RS256", "ES256"]
            ).claims
        except (JoseError, ValueError, IndexError, AttributeError, TypeError):
            return None
        now = time.time()
        audiences = (
            claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        )
        exp = claims.get("exp")
        if (
            claims.get("iss") != client.client_id
            or claims.get("sub") != client.client_id
            or not {f"{self.issuer}/token", self.issuer} & set(audiences)
            or not isinstance(exp, int | float)
            or not now < exp <= now + ASSERTION_MAX_SECONDS
            or not isinstance(claims.get("jti"), str)
        ):
            return None
        with self._lock:
            self._jtis = {jti: until for jti, until in self._jtis.items() if until > now}
            if claims["jti"] in self._jtis:
                return None
            self._jtis[claims["jti"]] = float(exp)
        return client.client_id

    def redeem(self, client_id: str, form: Mapping[str, str]) -> _Grant:
        """The grant of the form's code, once; ValueError naming the OAuth error."""
        if form.get("grant_type") != "authorization_code":
            raise ValueError("unsupported_grant_type")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires < time.time() or grant.client_id != client_id:
            raise ValueError("invalid_grant")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise ValueError("invalid_grant")
        challenge = _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if not hmac.compare_digest(challenge.encode(), grant.code_challenge.encode()):
            raise ValueError("invalid_grant")
        return grant

    def issue_tokens(self, grant: _Grant) -> dict[str, Any]:
        """The token response for a redeemed grant."""
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._tokens = {t: g for t, g in self._tokens.items() if g.expires > now}
            self._tokens[access_token] = replace(grant, expires=now + TOKEN_SECONDS)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "scope": " ".join(sorted(grant.scopes)),
            "id_token": self.id_token(grant),
        }

    def userinfo(self, authorization: str) -> dict[str, Any] | None:
        """The claims for a live bearer token, or None."""
        if authorization[:7].lower() != "bearer ":
            return None
        with self._lock:
            grant = self._tokens.get(authorization[7:].strip())
        if grant is None or grant.expires < time.time():
            return None
        sub = "someone-else" if grant.hostile == "userinfo_sub" else grant.sub
        return {"sub": sub, **grant.claims}

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [self._alg(self.key)],
            "scopes_supported": ["openid", "profile", "address"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [HIGH],
            "ui_locales_supported": ["de", "en"],
            "authorization_response_iss_parameter_supported": True,
            "claims_supported": [
                "sub",
                "family_name",
                "given_name",
                "birth_name",
                "academic_title",
                "birthdate",
                "place_of_birth",
                "address",
                "nationality",
                "document_type",
                "issuing_state",
            ],
        }

    # -- web ------------------------------------------------------------------------

    def router(self) -> Router:
        """The simulator's routes under its path, to serve alone (:meth:`app`) or mounted."""
        return Router(
            path=EID_SIMULATOR_PATH,
            route_handlers=[discovery, jwks, authorize_page, authorize_submit, token, userinfo],
            dependencies={"simulator": Provide(lambda: self, sync_to_thread=False)},
            # Its forms carry the whole request and it has no session to ride on: mounted
            # in idp's app (development), idp's CSRF guard leaves them alone.
            opt={"csrf": False},
        )

    def app(self) -> Litestar:
        """A Litestar app serving only the simulator."""
        return Litestar(
            route_handlers=[self.router()],
            openapi_config=None,
            request_max_body_size=65536,
        )


class _Redirected(Exception):
    """An authorization error to send to the (verified) redirect URI."""

    def __init__(self, carried: Mapping[str, str], error: str, description: str) -> None:
        super().__init__(error)
        self.carried = carried
        self.error = error
        self.description = description


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _spoil_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(_b64decode(signature))
    raw[0] ^= 0x01
    return f"{header}.{payload}.{_b64(bytes(raw))}"


def _new_key_like(key: ECKey | RSAKey) -> ECKey | RSAKey:
    fresh: ECKey | RSAKey = (
        ECKey.generate_key("P-256") if isinstance(key, ECKey) else RSAKey.generate_key(2048)
    )
    fresh.ensure_kid()
    return fresh


def _load_key(path: Path) -> ECKey | RSAKey:
    pem = path.read_bytes()
    try:
        key: ECKey | RSAKey = ECKey.import_key(pem)
    except (JoseError, ValueError):
        key = RSAKey.import_key(pem)
    key.ensure_kid()
    return key


def load_or_create_key(path: Path, alg: str = "ES256") -> ECKey | RSAKey:
    """The simulator's signing key kept in ``path`` (PEM, created with mode 0600 if
    missing), so that tokens and the JWKS survive a restart."""
    if not path.exists():
        key = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(2048)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(key.as_pem(private=True))
    return _load_key(path)


# -- handlers -----------------------------------------------------------------------

# The simulator a handler serves, provided by its router.
Served = NamedDependency[Simulator]

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _language(request: Request, params: Mapping[str, str]) -> str:
    if params.get("lang") in TEXTS:
        return params["lang"]
    for tag in params.get("ui_locales", "").split():
        if tag.split("-")[0].lower() in TEXTS:
            return tag.split("-")[0].lower()
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().split("-")[0].lower()
        if tag in TEXTS:
            return tag
    return "de"


def _page(template: str, lang: str, status: int = 200, **context: Any) -> Response:
    other = "en" if lang == "de" else "de"
    html = _templates.get_template(template).render(
        lang=lang, other_lang=other, t=TEXTS[lang], **context
    )
    return Response(html, status_code=status, media_type="text/html", headers=_PAGE_HEADERS)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _refused(request: Request, params: Mapping[str, str], reason: str) -> Response:
    return _page("error.html", _language(request, params), 400, reason=reason, switch_url=None)


def _redirect_error(simulator: Simulator, error: _Redirected) -> Response:
    answer = {"error": error.error, "error_description": error.description}
    if error.carried.get("state"):
        answer["state"] = error.carried["state"]
    answer["iss"] = simulator.issuer
    return Redirect(_with_query(error.carried["redirect_uri"], answer), status_code=303)


def _persons_page(simulator: Simulator, carried: Mapping[str, str], lang: str) -> Response:
    action = f"{simulator.issuer}/authorize"
    hidden = [(k, v) for k, v in carried.items() if k != "lang"] + [("lang", lang)]
    return _page(
        "persons.html",
        lang,
        action=action,
        hidden=hidden,
        client_id=carried["client_id"],
        persons=list(simulator.persons.values()),
        form_url=_with_query(action, {**carried, "lang": lang, "view": "attributes"}),
        switch_url=_with_query(action, {**carried, "lang": "en" if lang == "de" else "de"}),
    )


def _attributes_page(
    simulator: Simulator,
    carried: Mapping[str, str],
    lang: str,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> Response:
    texts = TEXTS[lang]
    action = f"{simulator.issuer}/authorize"
    hidden = [(k, v) for k, v in carried.items() if k != "lang"] + [("lang", lang)]
    defaults = {name: "D" for name in _CODES} | {"document_type": "ID"}
    return _page(
        "attributes.html",
        lang,
        400 if errors else 200,
        action=action,
        hidden=hidden,
        fields=_FIELDS,
        required=_REQUIRED,
        labels={name: texts[name] for name in _FIELDS},
        documents=[(code, texts[f"doc_{code}"]) for code in _DOCUMENTS],
        values={**defaults, **(values or {})},
        errors=errors or {},
        back_url=_with_query(action, {**carried, "lang": lang}),
        switch_url=_with_query(
            action, {**carried, "lang": "en" if lang == "de" else "de", "view": "attributes"}
        ),
    )


def _entered(form: Mapping[str, str], lang: str) -> tuple[dict[str, str], dict[str, str]]:
    """The entered attributes (trimmed), and the problems found, per field."""
    texts = TEXTS[lang]
    values = {name: form.get(name, "").strip() for name in (*_FIELDS, "card")}
    errors: dict[str, str] = {}
    for name in _FIELDS:
        value = values[name]
        if name in _REQUIRED and not value:
            errors[name] = texts["required"]
        elif len(value) > 100 or _CONTROL.search(value):
            errors[name] = texts["bad_text"]
    if values["birthdate"] and "birthdate" not in errors:
        try:
            date.fromisoformat(values["birthdate"])
            if len(values["birthdate"]) != 10:
                raise ValueError(values["birthdate"])
        except ValueError:
            errors["birthdate"] = texts["bad_date"]
    for name in _CODES:
        values[name] = values[name].upper()
        if name not in errors and not _CODE.fullmatch(values[name]):
            errors[name] = texts["bad_code"]
    if values["document_type"] not in _DOCUMENTS:
        values["document_type"] = "ID"
    return values, errors


def _entered_person(values: Mapping[str, str]) -> Person:
    fields = {name: values[name] or None for name in _FIELDS}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return Person(
        key=f"entered:{digest}",
        label=f"{values['given_name']} {values['family_name']}",
        about={},
        family_name=values["family_name"],
        given_name=values["given_name"],
        birth_name=fields["birth_name"],
        academic_title=fields["academic_title"],
        birthdate=fields["birthdate"],
        place_of_birth=fields["place_of_birth"],
        street_address=fields["street_address"],
        postal_code=fields["postal_code"],
        locality=fields["locality"],
        country=values["country"],
        nationality=values["nationality"],
        document_type=values["document_type"],
        issuing_state=values["issuing_state"],
    )


def _json(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content,
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


@get("/.well-known/openid-configuration", sync_to_thread=False)
def discovery(simulator: Served) -> Response:
    """OpenID Connect Discovery."""
    simulator.requests["discovery"] += 1
    return _json(simulator.metadata())


@get("/jwks.json", sync_to_thread=False)
def jwks(simulator: Served) -> Response:
    """The public signing keys."""
    simulator.requests["jwks"] += 1
    return _json(simulator.jwks())


@get("/authorize", sync_to_thread=False)
def authorize_page(simulator: Served, request: Request) -> Response:
    """The test persons (or, with ``view=attributes``, the form to enter attributes)."""
    simulator.requests["authorize"] += 1
    params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    try:
        carried = simulator.authorization(params)
    except _Refused as exc:
        return _refused(request, params, str(exc))
    except _Redirected as exc:
        return _redirect_error(simulator, exc)
    lang = _language(request, params)
    if params.get("view") == "attributes":
        return _attributes_page(simulator, carried, lang)
    return _persons_page(simulator, carried, lang)


@post("/authorize")
async def authorize_submit(simulator: Served, request: Request) -> Response:
    """A choice on the page: a person, entered attributes, cancel or a card error."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        carried = simulator.authorization(form)
    except _Refused as exc:
        return _refused(request, form, str(exc))
    except _Redirected as exc:
        return _redirect_error(simulator, exc)
    lang = _language(request, form)
    choice = form.get("choice", "")
    if choice == "cancel":
        return _redirect_error(simulator, _Redirected(carried, "access_denied", "cancelled"))
    if choice in ("pin_blocked", "online_function_inactive"):
        return _redirect_error(simulator, _Redirected(carried, choice, "card error"))
    if choice == "entered":
        values, errors = _entered(form, lang)
        if errors:
            return _attributes_page(simulator, carried, lang, values, errors)
        person = _entered_person(values)
    elif choice in simulator.persons:
        person = simulator.persons[choice]
    else:
        return _refused(request, form, "unknown choice")
    card = "2" if form.get("card") == "2" else "1"
    sub = simulator.pseudonym(carried["client_id"], person.key, card)
    claims = person.claims(set(carried.get("scope", "").split()))
    code = simulator.issue_code(carried, sub, claims)
    answer = {"code": code, "iss": simulator.issuer}
    if carried.get("state"):
        answer["state"] = carried["state"]
    return Redirect(_with_query(carried["redirect_uri"], answer), status_code=303)


@post("/token")
async def token(simulator: Served, request: Request) -> Response:
    """The authorization code grant, with PKCE and client authentication."""
    simulator.requests["token"] += 1
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    client_id = simulator.authenticate(request.headers, form)
    if client_id is None:
        return _json(
            {"error": "invalid_client"}, 401, {"WWW-Authenticate": 'Basic realm="eid-simulator"'}
        )
    try:
        grant = simulator.redeem(client_id, form)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    if grant.hostile == "server_error":
        return Response(
            "<h1>500 Internal Server Error</h1>", status_code=500, media_type="text/html"
        )
    if grant.hostile == "slow":
        await asyncio.sleep(simulator.slow_seconds)
    return _json(simulator.issue_tokens(grant))


@get("/userinfo", sync_to_thread=False)
def userinfo(simulator: Served, request: Request) -> Response:
    """The identified person's claims for the bearer token."""
    simulator.requests["userinfo"] += 1
    claims = simulator.userinfo(request.headers.get("authorization", ""))
    if claims is None:
        return _json(
            {"error": "invalid_token"}, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    return _json(claims)
