"""Login sessions: digests at rest, idle and absolute timeouts, ending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

import idp.clock
from idp.accounts.realms import CITIZEN
from idp.accounts.sessions import add_method, end_all_sessions, load_session
from idp.accounts.signin import PASSWORD, open_login_session
from idp.db.models import Account, LoginSession


def _account(session) -> Account:
    now = idp.clock.now(session)
    account = Account(subject="s1", email="a@example.de", created_at=now, updated_at=now)
    session.add(account)
    session.flush()
    return account


def start_session(session, account, settings) -> tuple[str, LoginSession]:
    """A password session of ``account`` opened by the sign-in flow: (cookie token, row)."""
    opened = open_login_session(
        session, settings, CITIZEN, account.id, PASSWORD, ip=None, user_agent=None, replacing=None
    )
    return opened.token, session.get_one(LoginSession, opened.id)


def method_times(row: LoginSession) -> dict[str, datetime]:
    """The latest time each method was used in the session."""
    times: dict[str, datetime] = {}
    for entry in row.methods:
        at = datetime.fromisoformat(entry["at"])
        times[entry["method"]] = max(at, times.get(entry["method"], at))
    return times


def test_only_the_tokens_digest_is_stored(db, settings):
    with db.unit_of_work() as session:
        token, _ = start_session(session, _account(session), settings)
    with db.unit_of_work() as session:
        stored = session.scalars(select(LoginSession)).one()
        assert token.encode() not in stored.token_digest
        assert load_session(session, token, CITIZEN, settings).id == stored.id
        assert load_session(session, token + "x", CITIZEN, settings) is None


def test_a_session_idle_longer_than_allowed_ends(db, settings, clock):
    with db.unit_of_work() as session:
        token, _ = start_session(session, _account(session), settings)
    clock.advance(timedelta(minutes=settings.session_idle_minutes + 1))
    with db.unit_of_work() as session:
        assert load_session(session, token, CITIZEN, settings) is None
        assert session.scalars(select(LoginSession)).one().end_reason == "idle"


def test_an_active_session_still_ends_at_its_absolute_limit(db, settings, clock):
    with db.unit_of_work() as session:
        token, _ = start_session(session, _account(session), settings)
    for _ in range(settings.session_max_hours * 4):
        clock.advance(timedelta(minutes=15))
        with db.unit_of_work() as session:
            if load_session(session, token, CITIZEN, settings) is None:
                break
    with db.unit_of_work() as session:
        assert session.scalars(select(LoginSession)).one().end_reason == "expired"


def test_step_up_methods_are_recorded_with_their_times(db, settings, clock):
    with db.unit_of_work() as session:
        token, row = start_session(session, _account(session), settings)
        clock.advance(timedelta(minutes=2))
        add_method(row, "otp")
    with db.unit_of_work() as session:
        times = method_times(load_session(session, token, CITIZEN, settings))
    assert set(times) == {"pwd", "otp"}
    assert times["otp"] - times["pwd"] >= timedelta(minutes=2)
    assert times["otp"].tzinfo == UTC and times["otp"] <= datetime.now(UTC) + timedelta(hours=1)


def test_ending_all_sessions_of_an_account(db, settings):
    with db.unit_of_work() as session:
        account = _account(session)
        tokens = [start_session(session, account, settings)[0] for _ in range(3)]
        assert end_all_sessions(session, account.id, "password_reset") == 3
    with db.unit_of_work() as session:
        assert all(load_session(session, t, CITIZEN, settings) is None for t in tokens)
