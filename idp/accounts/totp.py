"""TOTP (RFC 6238) second factor: enrolment with a QR code, verification without replay.

Enrolment is a flow: :func:`begin` makes a secret, keeps it sealed in a
``totp_enrolment`` Flow for ten minutes and returns what the citizen scans;
:func:`confirm` checks a first code and creates the factor. The seed is stored
encrypted (:mod:`idp.keys.secretbox`); each factor remembers the last time
step it accepted, so a code, once used, is refused (also in the window
around it). Codes are accepted one step either side of now for clock drift.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pyotp
import segno
from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import factors
from idp.accounts.factors import FactorError
from idp.audit import events
from idp.db import flows
from idp.db.models import Account, Flow, SecondFactor
from idp.keys.secretbox import SecretBox

STEP = 30
DIGITS = 6
ENROLMENT_MINUTES = 10


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the flow id, the key to type, the QR code."""

    flow_id: str
    secret: str
    uri: str
    qr_svg: str


def _owner(account_id: int) -> str:
    return f"totp:{account_id}"


def _normalise(code: str) -> str:
    return "".join(code.split())


def _enrolment(flow_id: str, secret: str, email: str, label: str) -> Enrolment:
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=email, issuer_name=label
    )
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return Enrolment(flow_id, secret, uri, svg)


def begin(session: Session, account: Account, box: SecretBox, issuer: str) -> Enrolment:
    """Start enrolling a TOTP app for ``account``; ``issuer`` names the service in the app."""
    secret = pyotp.random_base32()
    label = urlsplit(issuer).netloc
    now = clock.now(session)
    flow = Flow(
        id=secrets.token_urlsafe(16),
        kind="totp_enrolment",
        state={
            "sealed": base64.b64encode(box.seal(secret.encode(), _owner(account.id))).decode(),
            "label": label,
        },
        account_id=account.id,
        created_at=now,
        expires_at=now + timedelta(minutes=ENROLMENT_MINUTES),
    )
    session.add(flow)
    return _enrolment(flow.id, secret, account.email, label)


def pending(session: Session, account: Account, flow_id: str, box: SecretBox) -> Enrolment | None:
    """The open enrolment ``flow_id`` of ``account`` (to show again after a wrong code)."""
    flow = _flow(session, account, flow_id)
    if flow is None:
        return None
    secret = box.open(base64.b64decode(flow.state["sealed"]), _owner(account.id)).decode()
    return _enrolment(flow.id, secret, account.email, flow.state["label"])


def _flow(session: Session, account: Account, flow_id: str) -> Flow | None:
    return flows.live(session, session.get(Flow, flow_id), "totp_enrolment", account_id=account.id)


def _matching_step(secret: str, code: str, after: int | None, now: datetime) -> int | None:
    """The time step (``now``'s or one either side) whose code is ``code`` and is newer than
    ``after``."""
    code = _normalise(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = int(now.timestamp()) // STEP
    for step in (current - 1, current, current + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.at(step * STEP), code):
            return step
    return None


def confirm(
    session: Session,
    account: Account,
    flow_id: str,
    code: str,
    box: SecretBox,
    binding: str,
    label: str = "",
) -> SecondFactor:
    """Finish enrolment with a first code from the app; raises FactorError if wrong or expired."""
    flow = _flow(session, account, flow_id)
    if flow is None:
        raise FactorError("enrolment expired")
    sealed = base64.b64decode(flow.state["sealed"])
    secret = box.open(sealed, _owner(account.id)).decode()
    step = _matching_step(secret, code, None, clock.now(session))
    if step is None:
        raise FactorError("wrong code")
    if not flows.claim(session, flow):
        raise FactorError("enrolment expired")
    factor = SecondFactor(
        account_id=account.id,
        kind="totp",
        label=(label.strip() or "Authenticator")[:64],
        binding=binding,
        amr="otp",
        created_at=clock.now(session),
        failures=0,
        totp_secret=sealed,
        totp_last_step=step,
    )
    session.add(factor)
    session.flush()
    events.record(
        session,
        "factor.enrolled",
        account_id=account.id,
        data={"kind": "totp", "binding": binding, "factor": factor.id},
    )
    return factor


def verify(session: Session, account: Account, code: str, box: SecretBox) -> SecondFactor | None:
    """The account's TOTP factor that accepts ``code`` now (used, not to be replayed), or None.

    Raises TooManyAttempts while the factors are paused after wrong codes.
    """
    candidates = factors.reserve(session, account.id, "totp")
    if not candidates:
        return None
    for factor in candidates:
        secret = box.open(factor.totp_secret or b"", _owner(account.id)).decode()
        step = _matching_step(secret, code, factor.totp_last_step, clock.now(session))
        if step is not None:
            factor.totp_last_step = step
            for other in candidates:  # a right code ends the run of wrong ones
                other.failures = 0
            factors.note_success(session, factor)
            return factor
    for factor in candidates:
        factors.note_failure(session, factor)
    return None
