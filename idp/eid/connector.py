"""The one interface every eID upstream implements, and what passes through it.

A connector turns "identify this citizen with the ID card" into two calls::

    begun = await connector.start(redirect_uri, locale="de")
    # the caller stores begun.pending server-side, bound to this browser (idp.eid.pending),
    # and redirects the browser to begun.url; later, at redirect_uri:
    result = await connector.finish(callback_params, pending)   # EidResult, or EidFailure

``finish`` returns an :class:`EidResult` (attributes under our names, the card's
pseudonym) or raises one of :mod:`idp.eid.errors`. Neither call touches the database:
the caller keeps the :class:`PendingEid` and makes it single use.

The OpenID Connect relying party (:class:`idp.eid.oidc.OidcConnector`) is the first
implementation. A SAML connector (BSI TR-03130 eID-Service, BundID) would put its
AuthnRequest in ``url`` (HTTP-Redirect binding), keep its request id in ``nonce`` and its
RelayState in ``state``, and read ``SAMLResponse`` from ``params``; an EUDI-wallet
connector (OpenID for Verifiable Presentations) likewise. Each is chosen in
:func:`idp.eid.connector_for`; the flows do not change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from idp.keys.secret import derive_key
from idp.settings import EID_ATTRIBUTES

# Our document types (the `type` of Identity Assurance's document evidence) for the
# documents with an online function: the German identity card, the electronic residence
# permit (eAT), the eID card for citizens of the EU and EEA.
IDCARD = "idcard"
RESIDENCE_PERMIT = "residence_permit"
UNION_CITIZEN_CARD = "union_citizen_card"
DOCUMENT_TYPES = (IDCARD, RESIDENCE_PERMIT, UNION_CITIZEN_CARD)
# The attributes of an EidResult an upstream's claims are mapped to (idp.eid.oidc.CLAIMS).
ATTRIBUTES = EID_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class PendingEid:
    """What a started identification must remember until its callback.

    The caller keeps it server-side (never in the browser: ``nonce`` and
    ``code_verifier`` are secrets) in a flow bound to the browser that started it, and
    hands it to ``finish`` once. ``connector`` and ``issuer`` let ``finish`` refuse a
    flow started with another upstream (after a configuration change).
    """

    connector: str
    issuer: str
    state: str = field(repr=False)
    redirect_uri: str
    created_at: datetime
    nonce: str = field(default="", repr=False)
    code_verifier: str = field(default="", repr=False)

    def to_state(self) -> dict[str, str]:
        """A JSON-able form for a flow row's state."""
        values = asdict(self)
        values["created_at"] = self.created_at.isoformat()
        return values

    @classmethod
    def from_state(cls, values: Mapping[str, Any]) -> PendingEid:
        """The inverse of :meth:`to_state`; KeyError or ValueError if it is not one."""
        return cls(
            connector=str(values["connector"]),
            issuer=str(values["issuer"]),
            state=str(values["state"]),
            redirect_uri=str(values["redirect_uri"]),
            created_at=datetime.fromisoformat(values["created_at"]),
            nonce=str(values.get("nonce", "")),
            code_verifier=str(values.get("code_verifier", "")),
        )


@dataclass(frozen=True, slots=True)
class EidStart:
    """Where to send the browser, and what to keep for the callback."""

    url: str
    pending: PendingEid


@dataclass(frozen=True, slots=True)
class Place:
    """A place of birth: the locality as on the card; the country if the upstream gives it
    (ISO 3166-1 alpha-3)."""

    locality: str
    country: str | None = None


@dataclass(frozen=True, slots=True)
class Address:
    """The address on the card (``country`` ISO 3166-1 alpha-3)."""

    street_address: str | None = None
    postal_code: str | None = None
    locality: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class EidResult:
    """A citizen identified with the eID: the card's data under our names.

    ``pseudonym`` is the card's restricted identification for this service (the
    upstream's ``sub``): store it only as :func:`pseudonym_digest`. Names are as the card
    holds them (the German card: capitals, with umlauts); dates ``YYYY-MM-DD``, or
    ``YYYY-MM``/``YYYY`` where the card has no day or month. No card serial number or
    document number is ever part of it.
    """

    issuer: str
    pseudonym: str
    family_name: str
    given_name: str
    birth_family_name: str | None = None
    academic_title: str | None = None
    birthdate: str | None = None
    place_of_birth: Place | None = None
    address: Address | None = None
    nationalities: tuple[str, ...] = ()
    document_type: str | None = None  # one of DOCUMENT_TYPES
    issuing_state: str | None = None  # ICAO 9303 code as on the card: Germany is "D"
    acr: str | None = None  # the upstream's level for this identification

    def __repr__(self) -> str:
        # Personal data and the pseudonym stay out of logs and tracebacks.
        return f"EidResult(issuer={self.issuer!r}, document_type={self.document_type!r})"


class Connector(Protocol):
    """An eID upstream: where to send the browser, and what came back."""

    name: str
    issuer: str

    async def start(self, redirect_uri: str, *, locale: str | None = None) -> EidStart:
        """Begin an identification returning to ``redirect_uri``; raise EidUnavailable or
        EidInvalidResponse if the upstream cannot be used now."""
        ...

    async def finish(self, params: Mapping[str, str], pending: PendingEid) -> EidResult:
        """The result of the callback ``params`` (query or form) for ``pending``; raise an
        :class:`idp.eid.errors.EidFailure` otherwise."""
        ...


def pseudonym_digest(secret_key: bytes, issuer: str, sub: str) -> bytes:
    """The stored form of a card's pseudonym: HMAC-SHA256 under a subkey of the service
    secret, over the upstream's issuer and its ``sub``.

    Keyed, so a database dump cannot be matched against another service's pseudonyms;
    over the issuer, since a pseudonym is only unique per upstream. The service secret
    must stay the same: with another one, no card finds its account again.
    """
    key = derive_key(secret_key, "eid-pseudonym")
    # A NUL cannot occur in an issuer URL, so the pair is read back one way only.
    return hmac.new(key, f"{issuer}\x00{sub}".encode(), hashlib.sha256).digest()
