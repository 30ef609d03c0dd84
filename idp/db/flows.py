"""Flows: the state of an interaction in progress (an authorization waiting for a login,
a step-up or a consent), with an id, an expiry and where it continues."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.models import Flow

# GET /authorize opens a flow for nearly every citizen: an ORM object added and flushed
# for it cost more than the insert itself.
_START = Prebuilt(insert(Flow.__table__))


def start(
    uow: Session,
    flow_id: str,
    *,
    kind: str,
    state: dict[str, Any],
    return_to: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Record a new, open flow of no account yet."""
    _START.execute(
        uow,
        {
            "id": flow_id,
            "kind": kind,
            "state": state,
            "account_id": None,
            "return_to": return_to,
            "created_at": now,
            "expires_at": expires_at,
            "completed_at": None,
        },
    )
