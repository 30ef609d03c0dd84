"""A started identification, kept server-side until its callback: single use, bound to
the browser that started it.

A :class:`PendingEid` lives in a ``flows`` row of kind ``eid`` whose id (256 random
bits) is that browser's cookie for the identification. The callback finds the flow only
with the cookie (another browser has none), only while it is live, only with the
``state`` the flow was started with; :func:`take` then completes the flow with one
conditional UPDATE, so one callback wins however many race. The flows use it so::

    flow_id = remember(uow, begun.pending, minutes=settings.eid_flow_minutes,
                       account_id=..., return_to=..., data={"purpose": "upgrade"})
    # commit; set flow_id as the eID cookie; redirect to begun.url. At the callback:
    taken = take(uow, cookie, params.get("state"))   # commit before asking the upstream
    result = await connector.finish(params, taken.pending)
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from idp import clock
from idp.db import flows
from idp.db.models import Flow
from idp.eid.connector import PendingEid
from idp.eid.errors import EidStateInvalid

KIND = "eid"
# A flow id is 43 characters; anything much longer is not one (and not worth a query).
_MAX_ID = 64


@dataclass(frozen=True, slots=True)
class TakenEid:
    """A flow taken at its callback: the pending identification and what the flow kept."""

    pending: PendingEid
    account_id: int | None
    return_to: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


def remember(
    session: Session,
    pending: PendingEid,
    *,
    minutes: int,
    account_id: int | None = None,
    return_to: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> str:
    """Keep ``pending`` for ``minutes``; the new flow's id, for the browser's cookie.
    ``data`` (JSON-able) is what the flow needs afterwards, e.g. why it was started."""
    now = clock.now(session)
    flow_id = secrets.token_urlsafe(32)
    session.add(
        Flow(
            id=flow_id,
            kind=KIND,
            account_id=account_id,
            state={"eid": pending.to_state(), "data": dict(data or {})},
            return_to=return_to,
            created_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
    )
    session.flush()
    return flow_id


def take(session: Session, flow_id: str | None, state: str | None) -> TakenEid:
    """Complete the live flow ``flow_id`` whose state is ``state``, once; raise
    EidStateInvalid: ``no_flow`` (unknown, expired, another browser's), ``state_mismatch``,
    ``replayed`` (finished already)."""
    found = session.get(Flow, flow_id) if flow_id and len(flow_id) <= _MAX_ID else None
    if found is not None and found.kind == KIND and found.completed_at is not None:
        raise EidStateInvalid("replayed", "this identification was finished already")
    flow = flows.live(session, found, KIND)
    if flow is None:
        raise EidStateInvalid("no_flow", "no live eID flow was started in this browser")
    pending = PendingEid.from_state(flow.state["eid"])
    if not hmac.compare_digest((state or "").encode(), pending.state.encode()):
        raise EidStateInvalid("state_mismatch", "the callback's state is not the flow's")
    if not flows.claim(session, flow):
        raise EidStateInvalid("replayed", "this identification was finished already")
    return TakenEid(
        pending=pending,
        account_id=flow.account_id,
        return_to=flow.return_to,
        data=flow.state.get("data", {}),
    )
