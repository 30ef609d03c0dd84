"""Append-only audit trail whose events form a SHA-256 hash chain, with personal data
kept out of what the chain covers so that it can be erased.

Each event's hash covers the previous hash and the event's canonical JSON, so
deleting or editing a row breaks the chain, which :func:`verify` finds. The
canonical JSON holds what happened (time, event, actor, client, ``data``) and a
seal of the event's personal fields (the account, the client address, ``personal``
details such as an email address): an HMAC-SHA256 of them under a random key of
the event's own, stored beside them. While the key is there the seal binds the
fields (an edited address no longer matches); :func:`erase_personal_data` clears
an account's fields and keys, leaving seals that reveal nothing, and records the
erasure in the chain. ``data`` is for what is not personal.

The rows and statements are idp.db.audit's; this module decides what is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from sqlalchemy.orm import Session

from idp import clock
from idp.db import audit as store
from idp.db.models import AuditEvent

GENESIS = store.GENESIS  # the previous hash of the first event
# Session.info key: the events recorded in the open transaction, counted by
# idp.metrics when it commits.
RECORDED = "idp.audit_recorded"
# The event an erasure records: how many events lost their personal fields (no account).
ERASED = "audit.erased"
# The event that chained the trail again when the seals came (migration 0005): it names
# the first event that did not fit the chain before, if one did not.
RECHAINED = "audit.rechained"
# The fields the chain covers, beside the seal of the personal ones.
_CHAINED = ("event", "actor", "client_id", "data")
_KEY_BYTES = 16


def record(
    session: Session,
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
) -> int:
    """Append one event in the caller's transaction; return its id.

    ``data`` must hold nothing personal (the chain keeps it for good); personal details
    of the account (an email address, a name) go in ``personal``, erased with it.
    """
    session.info.setdefault(RECORDED, []).append(event)
    row = append_parameters(
        session,
        event,
        actor=actor,
        account_id=account_id,
        client_id=client_id,
        ip=ip,
        data=data,
        personal=personal,
    )
    return store.append(session, row)


def append_parameters(
    session: Session,
    event: str,
    *,
    actor: str | None = None,
    account_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One event as the parameters of an append (idp.db.audit), sealed and with the
    canonical text its hash covers; what :func:`record` writes."""
    row = {
        "at": clock.now(session).replace(microsecond=0),
        "event": event,
        "actor": actor,
        "client_id": client_id,
        "data": data or {},
        "account_id": account_id,
        "ip": ip,
        "personal": personal or None,
        "seal_key": None,
        "seal": None,
    }
    if account_id is not None or ip is not None or personal:
        row["seal_key"] = secrets.token_bytes(_KEY_BYTES)
        row["seal"] = _seal(row["seal_key"], row)
    row["canonical"] = _canonical(row)
    return row


def erase_personal_data(session: Session, account_id: int, *, actor: str | None = None) -> int:
    """Make the trail's personal data of ``account_id`` unrecoverable: clear the account,
    address and personal details of its events and the keys of their seals. The chain
    still verifies; the erasure is recorded (:data:`ERASED`, with the number of events
    and no account). Returns that number."""
    erased = store.clear_personal_fields(session, account_id)
    record(session, ERASED, actor=actor, data={"events": erased})
    return erased


def verify(session: Session) -> int | None:
    """Walk the chain; return the id of the first event that does not fit, or None.

    An event fits when it links to the one before, its hash covers it, and its personal
    fields match their seal or, erased, are all gone; the head names an event of the
    chain and its hash. Erased events must be as many as the recorded erasures say:
    when more have lost their fields, the last of them is returned. A chain that did not
    verify when it was chained again (:data:`RECHAINED`) goes on reporting the event
    that did not fit. Events appended while it runs come after the head it read first.
    """
    head = store.head(session)
    reached_head = head is None or (head.last_id, head.last_hash) == (0, GENESIS)
    prev = GENESIS
    erased: list[int] = []
    recorded_erased = 0
    for row in store.chain(session):
        if row.prev_hash != prev or store.link(prev, _canonical(row)) != row.hash:
            return row.id
        if not _fields_fit(row):
            return row.id
        if head is not None and row.id == head.last_id:
            if row.hash != head.last_hash:
                return row.id
            reached_head = True
        if row.seal is not None and row.seal_key is None:
            erased.append(row.id)
        if row.event == RECHAINED and row.data.get("broken_at") is not None:
            return int(row.data["broken_at"])
        if row.event == ERASED:
            recorded_erased += int(row.data.get("events", 0))
            if len(erased) < recorded_erased:  # an erasure counts only the events before it
                return row.id
        prev = row.hash
    if not reached_head:
        return head.last_id
    if len(erased) > recorded_erased:
        return erased[-1]
    return None


def _fields_fit(row: AuditEvent) -> bool:
    """Whether the personal fields are those sealed, or were erased (no key, no fields)."""
    if row.seal_key is not None:
        return row.seal is not None and hmac.compare_digest(_seal(row.seal_key, row), row.seal)
    return row.account_id is None and row.ip is None and not row.personal


def _seal(key: bytes, event: AuditEvent | dict[str, Any]) -> bytes:
    """HMAC-SHA256 of the event's personal fields under its own key."""
    fields = _fields(event, ("account_id", "ip", "personal"))
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _canonical(event: AuditEvent | dict[str, Any]) -> str:
    """The event's canonical JSON, which its hash covers after the previous hash."""
    body = _fields(event, _CHAINED)
    body["at"] = _field(event, "at").isoformat()
    seal = _field(event, "seal")
    body["seal"] = seal.hex() if seal is not None else None
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def _fields(event: AuditEvent | dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: _field(event, name) for name in names}


def _field(event: AuditEvent | dict[str, Any], name: str) -> Any:
    return event[name] if isinstance(event, dict) else getattr(event, name)
