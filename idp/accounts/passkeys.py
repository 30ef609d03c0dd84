"""Passkeys (WebAuthn) as a second factor: registration and authentication ceremonies.

Both ceremonies are flows: ``begin_*`` stores the challenge in a Flow
(``passkey_registration`` / ``passkey_authentication``, five minutes) and
returns the options for ``navigator.credentials``; ``finish_*`` verifies the
browser's answer with the ``webauthn`` package against that challenge, the
relying party id (the issuer's host name) and origin (the issuer). Platform
and roaming authenticators are both allowed. The signature counter is checked
on every use (a counter that does not grow means a cloned authenticator) and
stored. Every passkey is recorded as ``swk`` (RFC 8176): ``hwk`` means a key
proven to be held in hardware, and the ceremony asks for no attestation and
trusts no vendor's roots, so nothing proves where a key lives (a credential
that calls itself device-bound may be a software authenticator's).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import webauthn
from sqlalchemy.orm import Session
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp import clock
from idp.accounts.factors import FactorError, note_success
from idp.audit import events
from idp.db import factors as store
from idp.db import flows
from idp.db.models import Account, Flow, SecondFactor

CEREMONY_MINUTES = 5
# RFC 8176 value of a passkey without verified hardware attestation (see the module doc).
PASSKEY_AMR = "swk"


def relying_party(issuer: str) -> tuple[str, str]:
    """(RP id, origin) for an issuer URL: its host name, and scheme://host[:port]."""
    parts = urlsplit(issuer)
    return parts.hostname or "", f"{parts.scheme}://{parts.netloc}"


def _passkeys(session: Session, account_id: int) -> list[SecondFactor]:
    return store.of_account(session, account_id, "passkey")


def _descriptor(factor: SecondFactor) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in factor.transports or []:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # a transport newer than the library: the browser still finds the key
    return PublicKeyCredentialDescriptor(id=factor.credential_id or b"", transports=transports)


def _start(session: Session, account: Account, kind: str, challenge: bytes) -> str:
    now = clock.now(session)
    flow = Flow(
        id=secrets.token_urlsafe(16),
        kind=kind,
        state={"challenge": bytes_to_base64url(challenge)},
        account_id=account.id,
        created_at=now,
        expires_at=now + timedelta(minutes=CEREMONY_MINUTES),
    )
    session.add(flow)
    return flow.id


def _challenge(session: Session, account: Account, kind: str, flow_id: str) -> bytes:
    """The open ceremony's challenge, closing the flow (a challenge is used once)."""
    flow = session.get(Flow, flow_id, with_for_update=True)
    if flows.live(session, flow, kind, account_id=account.id) is None:
        raise FactorError("the passkey request expired; please try again")
    if not flows.claim(session, flow):
        raise FactorError("the passkey request expired; please try again")
    return webauthn.base64url_to_bytes(flow.state["challenge"])


def begin_registration(session: Session, account: Account, issuer: str) -> tuple[str, str]:
    """Start adding a passkey: (flow id, PublicKeyCredentialCreationOptions as JSON)."""
    rp_id, _ = relying_party(issuer)
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_id,
        user_id=account.subject.encode(),
        user_name=account.email,
        user_display_name=account.email,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(f) for f in _passkeys(session, account.id)],
    )
    flow_id = _start(session, account, "passkey_registration", options.challenge)
    return flow_id, webauthn.options_to_json(options)


def finish_registration(
    session: Session,
    account: Account,
    flow_id: str,
    credential: str,
    issuer: str,
    binding: str,
    label: str = "",
) -> SecondFactor:
    """Verify the browser's new credential (JSON) and store it; raises FactorError."""
    challenge = _challenge(session, account, "passkey_registration", flow_id)
    rp_id, origin = relying_party(issuer)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise FactorError(f"the passkey could not be verified: {exc}") from None
    # Insert-or-nothing on the unique credential id: checking first and then adding let
    # two ceremonies answered with one credential (two tabs, a faulty or hostile
    # authenticator) both pass the check, and the later failed with a 500.
    factor_id = store.add_passkey(
        session,
        {
            "account_id": account.id,
            "label": (label.strip() or "Passkey")[:64],
            "binding": binding,
            "amr": PASSKEY_AMR,
            "created_at": clock.now(session),
            "failures": 0,
            "credential_id": verified.credential_id,
            "public_key": verified.credential_public_key,
            "sign_count": verified.sign_count,
            "transports": _transports(credential),
        },
    )
    if factor_id is None:
        raise FactorError("this passkey is already registered")
    factor = session.get_one(SecondFactor, factor_id)
    events.record(
        session,
        "factor.enrolled",
        account_id=account.id,
        data={"kind": "passkey", "binding": binding, "factor": factor.id, "amr": factor.amr},
    )
    return factor


def _transports(credential: str) -> list[str]:
    try:
        data: Any = json.loads(credential)
        transports = data["response"].get("transports") or []
    except (ValueError, KeyError, AttributeError, TypeError):
        return []
    return [t for t in transports if isinstance(t, str)][:8]


def begin_authentication(session: Session, account: Account, issuer: str) -> tuple[str, str]:
    """Start a passkey check: (flow id, PublicKeyCredentialRequestOptions as JSON)."""
    rp_id, _ = relying_party(issuer)
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[_descriptor(f) for f in _passkeys(session, account.id)],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    flow_id = _start(session, account, "passkey_authentication", options.challenge)
    return flow_id, webauthn.options_to_json(options)


def finish_authentication(
    session: Session, account: Account, flow_id: str, credential: str, issuer: str
) -> SecondFactor:
    """Verify the browser's assertion (JSON) with one of the account's passkeys."""
    challenge = _challenge(session, account, "passkey_authentication", flow_id)
    try:
        raw_id = webauthn.base64url_to_bytes(json.loads(credential)["rawId"])
    except (ValueError, KeyError, TypeError):
        raise FactorError("the passkey answer is malformed") from None
    factor = store.passkey_in_use(session, account.id, raw_id)
    if factor is None:
        raise FactorError("this passkey is not registered for your account")
    rp_id, origin = relying_party(issuer)
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=factor.public_key or b"",
            credential_current_sign_count=factor.sign_count or 0,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        events.record(
            session,
            "factor.rejected",
            account_id=account.id,
            data={"kind": "passkey", "factor": factor.id, "reason": str(exc)[:200]},
        )
        raise FactorError("the passkey could not be verified") from None
    factor.sign_count = verified.new_sign_count
    note_success(session, factor)
    return factor
