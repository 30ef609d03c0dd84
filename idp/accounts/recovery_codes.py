"""Recovery codes: ten single-use look-up secrets (NIST 800-63B 5.1.2), shown once.

Each code has 50 random bits in an alphabet without look-alike letters,
grouped ``xxxxx-xxxxx`` for reading; only keyed digests (HMAC-SHA256 under a
key derived from the service secret) are stored. A new
set replaces the old one. A used code is recorded like a one-time password
(``otp``) with the set's binding.
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import factors
from idp.audit import events
from idp.db import factors as store
from idp.db.models import Account, SecondFactor
from idp.keys.secret import CodeDigests

COUNT = 10
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u
LENGTH = 10
# What people mistype for the letters the alphabet leaves out.
_LOOKALIKES = str.maketrans({"i": "1", "l": "1", "o": "0", "u": "v"})


PURPOSE = "recovery-codes"


def _digest(digests: CodeDigests, code: str) -> bytes:
    return digests.digest(PURPOSE, code)


def normalise(code: str) -> str:
    """A typed code as stored: lower case, no spaces or dashes, look-alikes mapped."""
    return "".join(c for c in code.lower() if c.isalnum()).translate(_LOOKALIKES)


def generate(session: Session, account: Account, binding: str, digests: CodeDigests) -> list[str]:
    """A new set of codes for ``account`` (the old set stops working); shown once."""
    store.drop_recovery_codes(session, account.id)
    factor = SecondFactor(
        account_id=account.id,
        kind="recovery_codes",
        label="Recovery codes",
        binding=binding,
        amr="otp",
        created_at=clock.now(session),
        failures=0,
    )
    raws = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]
    store.add_recovery_codes(session, factor, [_digest(digests, raw) for raw in raws])
    codes = [f"{raw[:5]}-{raw[5:]}" for raw in raws]
    events.record(
        session,
        "factor.enrolled",
        account_id=account.id,
        data={"kind": "recovery_codes", "binding": binding, "factor": factor.id},
    )
    return codes


def binding(session: Session, account_id: int) -> str | None:
    """How the account's set of codes is bound, if it has one with codes left."""
    if not remaining(session, account_id):
        return None
    return store.recovery_codes_binding(session, account_id)


def remaining(session: Session, account_id: int) -> int:
    """How many unused codes the account has."""
    return store.unused_codes(session, account_id)


def use(session: Session, account: Account, code: str, digests: CodeDigests) -> SecondFactor | None:
    """Spend one of the account's codes; its set, or None if the code is wrong or used.

    Raises TooManyAttempts while the set is paused after wrong codes.
    """
    sets = factors.reserve(session, account.id, "recovery_codes")
    if not sets:
        return None
    (factor,) = sets
    if not store.spend_code(
        session, factor.id, _digest(digests, normalise(code)), clock.now(session)
    ):
        factors.note_failure(session, factor)
        return None
    factors.note_success(session, factor)
    return factor
