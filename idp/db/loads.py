"""The entities the pages of every sign-in load, each by one prebuilt SELECT
(:class:`idp.db.engine.PrebuiltLoad`) and attached to the unit of work."""

from __future__ import annotations

from idp.db.engine import PrebuiltLoad
from idp.db.models import Account, Flow, LoginSession

ACCOUNT = PrebuiltLoad(Account)
FLOW = PrebuiltLoad(Flow)
LOGIN_SESSION_BY_DIGEST = PrebuiltLoad(LoginSession, LoginSession.__table__.c.token_digest)
