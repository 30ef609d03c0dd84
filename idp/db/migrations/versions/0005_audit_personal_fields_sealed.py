"""audit: personal fields out of the hash chain, sealed under a key of each event's own

Revision ID: 0005
Revises: 0004

The chain covered each event's account and client address, so erasing them would
break it. From here it covers a seal of them instead (HMAC-SHA256 under a random key
stored beside them, which an erasure clears with them; idp.audit.events). Existing
events are chained again under the new rule, in order: the old chain is checked
first, and one ``audit.rechained`` event at the end records how many events were
chained again, the old head's hash (to compare with a copy kept elsewhere) and, if
the old chain did not verify, the first event that did not fit, which idp audit
verify goes on reporting. The hashing is written out here, as it was and as it is at
this revision, so that later changes to idp.audit leave this migration as it is.

Downgrading chains the events again under the old rule and drops the new columns
(personal details and seals are lost; erased events stay without account and address).
"""

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import idp.db.models

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = b"\x00" * 32
RECHAINED = "audit.rechained"
BATCH = 1000
# The columns the two rules read.
_READ = (
    *("id", "at", "event", "actor", "account_id", "client_id", "ip", "data"),
    *("seal", "prev_hash", "hash"),
)

_EVENTS = sa.table(
    "audit_events",
    sa.column("id", sa.BigInteger()),
    sa.column("at", idp.db.models.UTCDateTime(timezone=True)),
    sa.column("event", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("account_id", sa.Integer()),
    sa.column("client_id", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("data", sa.JSON()),
    sa.column("prev_hash", sa.LargeBinary()),
    sa.column("hash", sa.LargeBinary()),
    sa.column("seal", sa.LargeBinary()),
    sa.column("seal_key", sa.LargeBinary()),
)
_HEAD = sa.table(
    "audit_head",
    sa.column("id", sa.Integer()),
    sa.column("last_id", sa.BigInteger()),
    sa.column("last_hash", sa.LargeBinary()),
)
# A rule: what an event's hash covers, given the event's columns; and the columns it sets.
Body = Callable[[dict[str, Any]], dict[str, Any]]


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _link(prev_hash: bytes, body: dict[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + _json(body)).digest()


def _old_body(event: dict[str, Any]) -> dict[str, Any]:
    """What an event's hash covered before this revision."""
    names = ("event", "actor", "account_id", "client_id", "ip", "data")
    return {"at": event["at"].isoformat(), **{name: event[name] for name in names}}


def _new_body(event: dict[str, Any]) -> dict[str, Any]:
    """What an event's hash covers from this revision on."""
    seal = event["seal"]
    return {
        "at": event["at"].isoformat(),
        **{name: event[name] for name in ("event", "actor", "client_id", "data")},
        "seal": seal.hex() if seal is not None else None,
    }


def _sealed(event: dict[str, Any]) -> dict[str, Any]:
    """A new key and the seal of the event's personal fields under it (none without any)."""
    if event["account_id"] is None and event["ip"] is None:
        return {"seal_key": None, "seal": None}
    key = secrets.token_bytes(16)
    fields = {"account_id": event["account_id"], "ip": event["ip"], "personal": None}
    return {"seal_key": key, "seal": hmac.new(key, _json(fields), hashlib.sha256).digest()}


def _events(connection: sa.Connection) -> Iterator[dict[str, Any]]:
    """Every event in the chain's order, a batch at a time (rows are updated meanwhile)."""
    columns = [_EVENTS.c[name] for name in _READ]
    last = 0
    while True:
        rows = connection.execute(
            sa.select(*columns).where(_EVENTS.c.id > last).order_by(_EVENTS.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        last = rows[-1].id


@dataclass
class Rechained:
    """What chaining again found and did."""

    events: int
    broken_at: int | None  # the first event that did not fit the old rule
    old_head: bytes
    new_head: bytes


def _rechain(connection: sa.Connection, old: Body, new: Body, sets: Body) -> Rechained:
    """Check the chain under the ``old`` rule and chain it again under the ``new`` one,
    setting on each event the columns ``sets`` gives it besides the hashes."""
    head = connection.execute(sa.select(_HEAD).where(_HEAD.c.id == 1)).first()
    old_prev = new_prev = GENESIS
    broken_at: int | None = None
    count = last_id = 0
    changes: list[dict[str, Any]] = []
    for event in _events(connection):
        if broken_at is None and (
            event["prev_hash"] != old_prev or _link(old_prev, old(event)) != event["hash"]
        ):
            broken_at = event["id"]
        old_prev = event["hash"]
        values = sets(event)
        new_hash = _link(new_prev, new({**event, **values}))
        changes.append({"event_id": event["id"], "prev_hash": new_prev, "hash": new_hash, **values})
        new_prev, last_id, count = new_hash, event["id"], count + 1
        if len(changes) == BATCH:
            _update(connection, changes)
            changes = []
    _update(connection, changes)
    if head is not None:
        if broken_at is None and head.last_hash != old_prev:
            broken_at = head.last_id
        connection.execute(
            _HEAD.update().where(_HEAD.c.id == 1).values(last_id=last_id, last_hash=new_prev)
        )
    return Rechained(count, broken_at, head.last_hash if head else GENESIS, new_prev)


def _update(connection: sa.Connection, changes: list[dict[str, Any]]) -> None:
    if changes:
        names = [name for name in changes[0] if name != "event_id"]
        statement = (
            _EVENTS.update()
            .where(_EVENTS.c.id == sa.bindparam("event_id"))
            .values({name: sa.bindparam(name) for name in names})
        )
        connection.execute(statement, changes)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("personal", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("seal", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("seal_key", sa.LargeBinary(length=16), nullable=True))
    connection = op.get_bind()
    done = _rechain(connection, _old_body, _new_body, _sealed)
    if not done.events:
        return
    event = {
        "at": datetime.now(UTC).replace(microsecond=0),
        "event": RECHAINED,
        "actor": "migration 0005",
        "client_id": None,
        "data": {
            "events": done.events,
            "previous_head": done.old_head.hex(),
            "broken_at": done.broken_at,
        },
        "seal": None,
    }
    new_hash = _link(done.new_head, _new_body(event))
    (event_id,) = connection.execute(
        _EVENTS.insert()
        .values(**event, prev_hash=done.new_head, hash=new_hash)
        .returning(_EVENTS.c.id)
    ).one()
    connection.execute(
        _HEAD.update().where(_HEAD.c.id == 1).values(last_id=event_id, last_hash=new_hash)
    )


def downgrade() -> None:
    _rechain(op.get_bind(), _new_body, _old_body, lambda _event: {})
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("seal_key")
        batch_op.drop_column("seal")
        batch_op.drop_column("personal")
