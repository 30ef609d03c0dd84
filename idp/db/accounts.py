"""The accounts' store: the writes a sign-in makes to an account besides its login time
(which idp.db.login_sessions sets with the session it opens)."""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from idp.db.engine import Prebuilt
from idp.db.models import Account

_ACCOUNTS = Account.__table__
_REHASHED = Prebuilt(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(password_hash=bindparam("password_hash"))
)


def replace_password_hash(session: Session, account_id: int, password_hash: str) -> None:
    """Store the account's password hashed anew (its stored hash had stale parameters)."""
    _REHASHED.execute(session, {"account": account_id, "password_hash": password_hash})
