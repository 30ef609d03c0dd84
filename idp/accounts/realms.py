"""Kinds of principal and what their sign-in mechanisms differ in.

Citizens and staff (clerks, supervisors) share one set of mechanisms: accounts,
login sessions, the session cookie, the login throttle and second factors. A
:class:`Realm` says what differs between them: which accounts it signs in
(``accounts.kind``), which sessions it accepts (``login_sessions.kind``), the
cookie's name and path, the session timeouts, the throttle counters' namespace
and the audit events' names. Code that opens, loads or throttles takes the realm
as a parameter instead of being copied per kind: a staff session is never
accepted where a citizen's is expected, and the other way round; throttles for
one email in the two realms count apart, so failed clerk logins cannot lock a
citizen out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter
from typing import Any

from idp.settings import Settings


@dataclass(frozen=True, slots=True)
class Realm:
    """The sign-in mechanisms of one kind of principal.

    ``kind`` is stored on the realm's accounts and sessions; ``cookie`` and ``path`` name
    the session cookie and where the browser sends it; ``idle_minutes`` and ``max_hours``
    read the session timeouts from the settings; ``throttle_prefix`` and ``event_prefix``
    set the realm's login throttle counters and audit events apart (empty for citizens,
    whose keys and names predate realms).
    """

    kind: str
    cookie: str
    path: str
    idle_minutes: Any  # Settings -> int
    max_hours: Any  # Settings -> int
    throttle_prefix: str
    event_prefix: str

    def idle_timeout(self, settings: Settings) -> timedelta:
        """How long a session of this realm may sit unused."""
        return timedelta(minutes=self.idle_minutes(settings))

    def lifetime(self, settings: Settings) -> timedelta:
        """How long a session of this realm lives at most after its login."""
        return timedelta(hours=self.max_hours(settings))

    def event(self, name: str) -> str:
        """The audit event ``name`` (``login.success``, ...) as this realm records it."""
        return self.event_prefix + name


CITIZEN = Realm(
    kind="citizen",
    cookie="idp_session",
    path="/",
    idle_minutes=attrgetter("session_idle_minutes"),
    max_hours=attrgetter("session_max_hours"),
    throttle_prefix="",
    event_prefix="",
)

STAFF = Realm(
    kind="staff",
    cookie="idp_clerk",
    path="/clerk",
    idle_minutes=attrgetter("staff_session_idle_minutes"),
    max_hours=attrgetter("staff_session_max_hours"),
    throttle_prefix="staff:",
    event_prefix="staff.",
)

_BY_KIND = {realm.kind: realm for realm in (CITIZEN, STAFF)}


def of_kind(kind: str) -> Realm:
    """The realm whose accounts and sessions are of ``kind``."""
    return _BY_KIND[kind]
