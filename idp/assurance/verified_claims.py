"""Verified identity data as claims: standard claims and ``verified_claims``
(OpenID Connect for Identity Assurance 1.0).

Only data proven by the eID or by a clerk's document check (a
:class:`VerifiedIdentity` row) is ever released here; self-asserted account
data never is. Release needs the scope ``identity``, which the consent step
grants per client, and a login at ``IDP_IDENTITY_MINIMUM_ACR`` (default
substantial) or above: a token whose ``acr`` is lower (a password alone) gets
none of it, whatever the account holds (:func:`acr_allows_identity`). Use from
userinfo and the ID token::

    if acr_allows_identity(token_acr, settings.identity_minimum_acr):
        identity = current_identity(session, account.id)
        claims.update(identity_claims(identity, granted_scopes,
                                      claims_request.get("userinfo"), target="userinfo"))

With no ``verified_claims`` request, userinfo gets every verified claim (as
standard claims and in ``verified_claims``) and the ID token none; with a
request, exactly the requested claims whose constraints
(``trust_framework``, ``assurance_level``) match are returned.

Evidence: ``eid`` (online ID card) and ``pipp`` (physical in-person proofing)
are given as a ``document`` evidence with ``check_details`` (``vcrypt``: the
card's chip checked cryptographically; ``vpip``: the document inspected in
person) and, for readers of earlier drafts, ``method``.

What can be released is fixed here (:data:`TRUST_FRAMEWORKS`,
:data:`DOCUMENT_TYPES`, :data:`CHECK_METHODS`, :data:`CLAIM_NAMES`):
:func:`check_supported` refuses to record an identity outside it, and
:func:`provider_metadata` advertises exactly it in discovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp.assurance.policy import rank
from idp.db.models import VerifiedIdentity

IDENTITY_SCOPE = "identity"
CLAIM_NAMES = (
    "given_name",
    "family_name",
    "birth_family_name",
    "birthdate",
    "place_of_birth",
    "address",
    "nationalities",
)
# Evidence method (earlier drafts' `method`) -> the check method of IDA 1.0.
CHECK_METHODS = {"eid": "vcrypt", "pipp": "vpip"}
# eIDAS levels, as the trust framework `eidas` names them.
TRUST_FRAMEWORKS = {"eidas": ("low", "substantial", "high")}
# Documents a clerk checks, or whose chip the eID reads (identity card, eID card of a
# residence permit, eID card for EU and EEA citizens); a passport has no eID function,
# but is checked in person.
DOCUMENT_TYPES = ("idcard", "passport", "residence_permit", "union_citizen_card")
EVIDENCE_TYPES = ("document",)


def acr_allows_identity(acr: str | None, minimum: str) -> bool:
    """Whether tokens of a login at ``acr`` may carry verified identity data: ``minimum``
    or above (an unknown or missing acr never may)."""
    return rank(acr) >= rank(minimum) > 0


def check_supported(identity: VerifiedIdentity) -> None:
    """Raise ValueError unless the identity can be released as this module describes it."""
    levels = TRUST_FRAMEWORKS.get(identity.trust_framework)
    if levels is None:
        raise ValueError(f"unsupported trust framework {identity.trust_framework!r}")
    if identity.assurance_level not in levels:
        raise ValueError(f"unsupported assurance level {identity.assurance_level!r}")
    if identity.evidence_method not in CHECK_METHODS:
        raise ValueError(f"unsupported evidence method {identity.evidence_method!r}")
    if identity.document_type is not None and identity.document_type not in DOCUMENT_TYPES:
        raise ValueError(f"unsupported document type {identity.document_type!r}")


def provider_metadata() -> dict[str, Any]:
    """The Identity Assurance fields of discovery (OpenID Connect for Identity Assurance 1.0)."""
    return {
        "verified_claims_supported": True,
        "trust_frameworks_supported": list(TRUST_FRAMEWORKS),
        "evidence_supported": list(EVIDENCE_TYPES),
        "documents_supported": list(DOCUMENT_TYPES),
        "documents_check_methods_supported": list(dict.fromkeys(CHECK_METHODS.values())),
        "claims_in_verified_claims_supported": list(CLAIM_NAMES),
    }


# Built once: the account is a parameter.
_CURRENT_IDENTITY = (
    select(VerifiedIdentity)
    .where(
        VerifiedIdentity.account_id == bindparam("account_id"),
        VerifiedIdentity.revoked_at.is_(None),
    )
    .order_by(VerifiedIdentity.verified_at.desc(), VerifiedIdentity.id.desc())
    .limit(1)
)


def current_identity(session: Session, account_id: int) -> VerifiedIdentity | None:
    """The account's verified identity in force (newest, not revoked), or None."""
    return session.scalar(_CURRENT_IDENTITY, {"account_id": account_id})


def _values(identity: VerifiedIdentity) -> dict[str, Any]:
    """The verified claims that have a value."""
    place = {
        k: v
        for k, v in (
            ("locality", identity.place_of_birth_locality),
            ("country", identity.place_of_birth_country),
        )
        if v
    }
    address = {
        k: v
        for k, v in (
            ("street_address", identity.street_address),
            ("postal_code", identity.postal_code),
            ("locality", identity.locality),
            ("country", identity.country),
        )
        if v
    }
    values: dict[str, Any] = {
        "given_name": identity.given_name,
        "family_name": identity.family_name,
        "birth_family_name": identity.birth_family_name,
        "birthdate": identity.birthdate,
        "place_of_birth": place or None,
        "address": address or None,
        "nationalities": list(identity.nationalities) or None,
    }
    return {k: v for k, v in values.items() if v}


def _time(identity: VerifiedIdentity) -> str:
    return identity.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _verification(identity: VerifiedIdentity) -> dict[str, Any]:
    """The full verification element of an identity."""
    document: dict[str, Any] = {}
    if identity.document_type:
        document["type"] = identity.document_type
    if identity.document_issuer_country:
        document["issuer"] = {"country_code": identity.document_issuer_country}
    if identity.document_expiry:
        document["date_of_expiry"] = identity.document_expiry
    evidence: dict[str, Any] = {
        "type": "document",
        "method": identity.evidence_method,
        "check_details": [
            {
                "check_method": CHECK_METHODS[identity.evidence_method],
                "organization": identity.verifier,
                "txn": identity.txn,
                "time": _time(identity),
            }
        ],
    }
    if document:
        evidence["document_details"] = document
    return {
        "trust_framework": identity.trust_framework,
        "assurance_level": identity.assurance_level,
        "time": _time(identity),
        "evidence": [evidence],
    }


def _matches(constraint: Any, value: str) -> bool:
    """Whether ``value`` meets a requested element's ``value``/``values`` constraint."""
    if not isinstance(constraint, Mapping):
        return True
    if "value" in constraint:
        return constraint["value"] == value
    if isinstance(constraint.get("values"), list):
        return value in constraint["values"]
    return True


def _answer(identity: VerifiedIdentity, request: Any) -> dict[str, Any] | None:
    """One verified_claims object answering one request object, or None if it cannot."""
    if not isinstance(request, Mapping):
        return None
    wanted_verification = request.get("verification")
    if not isinstance(wanted_verification, Mapping):
        return None
    full = _verification(identity)
    if not _matches(wanted_verification.get("trust_framework"), full["trust_framework"]):
        return None
    if not _matches(wanted_verification.get("assurance_level"), full["assurance_level"]):
        return None
    verification = {
        k: v for k, v in full.items() if k == "trust_framework" or k in wanted_verification
    }
    values = _values(identity)
    wanted_claims = request.get("claims")
    if isinstance(wanted_claims, Mapping) and wanted_claims:
        claims = {k: v for k, v in values.items() if k in wanted_claims}
    else:
        claims = values
    if not claims:
        return None
    return {"verification": verification, "claims": claims}


def needs_identity(
    scopes: Iterable[str],
    request: Mapping[str, Any] | None,
    *,
    target: Literal["userinfo", "id_token"],
) -> bool:
    """Whether :func:`identity_claims` can add anything for these arguments, whatever the
    identity: callers skip reading the identity when not (most ID tokens ask for none)."""
    if IDENTITY_SCOPE not in set(scopes):
        return False
    asked = request.get("verified_claims") if isinstance(request, Mapping) else None
    return target == "userinfo" or asked is not None


def identity_claims(
    identity: VerifiedIdentity | None,
    scopes: Iterable[str],
    request: Mapping[str, Any] | None,
    *,
    target: Literal["userinfo", "id_token"],
) -> dict[str, Any]:
    """Claims to add for ``target`` given the granted ``scopes`` and the ``claims``
    parameter's member for that target (``claims["userinfo"]`` or ``claims["id_token"]``)."""
    if identity is None or not needs_identity(scopes, request, target=target):
        return {}
    request = request if isinstance(request, Mapping) else {}
    values = _values(identity)
    result: dict[str, Any] = {}
    asked = request.get("verified_claims")
    if asked is None:
        if target != "userinfo":
            return {}
        result.update(values)
        result["verified_claims"] = {"verification": _verification(identity), "claims": values}
        return result
    result.update({k: v for k, v in values.items() if k in request})
    answers = [
        answer
        for answer in (
            _answer(identity, item) for item in (asked if isinstance(asked, list) else [asked])
        )
        if answer is not None
    ]
    if answers:
        result["verified_claims"] = answers[0] if len(answers) == 1 else answers
    return result
