"""Identity proofing happened: record the verified identity and raise the account.

The eID and in-person paths call :func:`record_proofing` once they have proven
who the citizen is. The account becomes ``high``, the second factors the
citizen proved during the proofing itself are bound (they may lift later
sessions to high; no other factor of the account is), and the act is audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

from sqlalchemy.orm import Session

from idp import clock
from idp.accounts import factors
from idp.assurance.verified_claims import check_supported
from idp.audit import events
from idp.db.models import Account, VerifiedIdentity


def record_proofing(
    session: Session,
    account: Account,
    identity: VerifiedIdentity,
    *,
    proven_factors: Collection[int],
) -> None:
    """Store ``identity`` (with its evidence) for ``account`` and raise the account to high.

    ``proven_factors``: the ids of the factors the citizen used in the proofing ceremony
    (the in-person code's factor; with the eID, :func:`factors.used_in_session` since it);
    only they are bound. Raises ValueError for evidence that verified_claims cannot
    describe truthfully.
    """
    check_supported(identity)
    identity.account_id = account.id
    identity.txn = identity.txn or secrets.token_urlsafe(16)
    session.add(identity)
    account.proofing_level = "high"
    account.updated_at = clock.now(session)
    bound = factors.bind_at_proofing(session, account.id, proven_factors)
    events.record(
        session,
        "account.proofed",
        account_id=account.id,
        data={
            "method": identity.evidence_method,
            "verifier": identity.verifier,
            "document_type": identity.document_type,
            "issuing_state": identity.document_issuer_country,
            "document_expiry": identity.document_expiry,
            "txn": identity.txn,
            "factors_bound": bound,
        },
    )
