"""Password logins under bursts of concurrent attempts: the throttle's limits hold.

The bursts go to `idp serve` with two worker processes on the test database (SQLite or
PostgreSQL), from threads released together, so the attempts really overlap.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from idp.accounts import login, throttle
from idp.accounts.errors import LoginBlocked, LoginFailed
from idp.accounts.realms import CITIZEN
from idp.accounts.registration import create_account
from idp.db.models import AuditEvent, LoginThrottle
from tests.accounts.conftest import FAST_HASH, STRONG
from tests.conftest import make_settings, on_own_loop

# No back-off before the lockout: a burst always reaches it, however slowly it arrives.
FREE = 8
LOCKOUT = 8


@pytest.fixture
def served(two_workers):
    """`idp serve` with two workers and small login limits; its URL."""
    with two_workers(
        IDP_LOGIN_FREE_ATTEMPTS=str(FREE), IDP_LOGIN_LOCKOUT_ATTEMPTS=str(LOCKOUT)
    ) as url:
        yield url


def _account(db, keys_dir, email: str) -> int:
    settings = make_settings(db.url, keys_dir, **FAST_HASH)
    with db.unit_of_work() as session:
        return create_account(session, settings, email=email, password=STRONG, verified=True).id


def _burst(url: str, attempts: list[tuple[str, str]]) -> list[httpx.Response]:
    """POST /login once per (email, password), all released at the same moment."""
    barrier = threading.Barrier(len(attempts))

    def attempt(email_password: tuple[str, str]) -> httpx.Response:
        email, password = email_password
        with httpx.Client(base_url=url, timeout=60) as browser:
            page = browser.get("/login")
            token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            barrier.wait()
            return browser.post(
                "/login", data={"email": email, "password": password, "csrf_token": token}
            )

    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(attempt, attempts))


def _events(db, *names: str) -> list[AuditEvent]:
    with db.unit_of_work() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)
            )
        )


def test_a_burst_of_wrong_passwords_checks_no_more_than_the_lockout_allows(served, db, keys_dir):
    _account(db, keys_dir, "paula@example.de")
    wrong = [("paula@example.de", f"falsch {n}") for n in range(99)]
    # The right password in the middle of the burst.
    answers = _burst(served, [*wrong[:50], ("paula@example.de", STRONG), *wrong[50:]])

    assert all(a.status_code < 500 for a in answers), [a.status_code for a in answers]
    assert {a.status_code for a in answers} <= {303, 400, 429}
    checked = _events(db, "login.failure", "login.success")
    # Every checked attempt held a reservation: no more than the lockout's worth, plus
    # the right password's own (it releases the count when it comes first).
    failures = [e for e in checked if e.event == "login.failure"]
    assert len(failures) <= 2 * LOCKOUT, len(failures)
    assert len([a for a in answers if a.status_code == 429]) >= 100 - 2 * LOCKOUT
    # No login succeeded after the lockout was recorded.
    lockouts = _events(db, "login.lockout")
    successes = [e for e in checked if e.event == "login.success"]
    if lockouts and successes:
        assert max(s.id for s in successes) < lockouts[-1].id


def test_a_burst_of_wrong_passwords_without_a_right_one_checks_at_most_the_lockout(
    served, db, keys_dir
):
    _account(db, keys_dir, "paula@example.de")
    answers = _burst(served, [("paula@example.de", f"falsch {n}") for n in range(100)])

    assert all(a.status_code in (400, 429) for a in answers), {a.status_code for a in answers}
    failures = _events(db, "login.failure")
    assert len(failures) <= LOCKOUT, [(e.id, e.data) for e in failures]
    # Locked now: the right password is refused too.
    with httpx.Client(base_url=served, timeout=30) as browser:
        page = browser.get("/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        refused = browser.post(
            "/login",
            data={"email": "paula@example.de", "password": STRONG, "csrf_token": token},
        )
    assert refused.status_code == 429, (refused.status_code, [e.data for e in failures])


def test_a_right_password_is_refused_when_the_email_was_locked_while_it_was_checked(
    db, keys_dir, clock
):
    settings = make_settings(db.url, keys_dir, **FAST_HASH)
    _account(db, keys_dir, "paula@example.de")

    async def right_password_while_others_lock() -> None:
        attempt = await login.begin(db, settings, CITIZEN, email="paula@example.de", ip="192.0.2.1")
        matched, new_hash = await login.check_password(settings, attempt, STRONG)
        assert matched
        # Meanwhile, attempts that began after this one reached the lockout.
        with db.unit_of_work() as session:
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == attempt.reservation.email_key)
                .values(
                    failures=settings.login_lockout_attempts,
                    blocked_until=clock.now() + timedelta(minutes=15),
                )
            )
        with pytest.raises(LoginBlocked):
            login.finish(
                db,
                settings,
                attempt,
                matched=True,
                new_hash=new_hash,
                ip=None,
                user_agent=None,
                replacing=None,
            )

    on_own_loop(right_password_while_others_lock())
    assert not _events(db, "login.success")


def test_a_long_run_of_failures_waits_at_most_the_lockout_time_and_never_fails(db, keys_dir, clock):
    settings = make_settings(db.url, keys_dir, login_lockout_attempts=1000, **FAST_HASH)
    # 200 failures counted: doubling from one second would overflow a timedelta.
    assert throttle.backoff(200, 5, timedelta(minutes=15)) == timedelta(minutes=15)
    key = throttle.email_key(CITIZEN, "paula@example.de")
    with db.unit_of_work() as session:
        session.add(LoginThrottle(key=key, failures=200, last_failure_at=clock.now()))

    async def one_more() -> None:
        attempt = await login.begin(db, settings, CITIZEN, email="paula@example.de", ip=None)
        assert attempt.reservation.email_position == 201
        with pytest.raises(LoginBlocked):
            await login.begin(db, settings, CITIZEN, email="paula@example.de", ip=None)

    on_own_loop(one_more())
    with db.unit_of_work() as session:
        row = session.get(LoginThrottle, key)
        assert row.blocked_until is not None
        # As the database returns it: naive on SQLite, aware on PostgreSQL.
        until = row.blocked_until.replace(tzinfo=None)
        assert until <= (clock.now() + timedelta(minutes=15, seconds=5)).replace(tzinfo=None)


def test_one_address_failing_many_logins_makes_another_citizen_wait_seconds_not_minutes(
    db, keys_dir, clock
):
    settings = make_settings(db.url, keys_dir, **FAST_HASH)
    _account(db, keys_dir, "paula@example.de")

    async def many_then_one() -> None:
        office = "198.51.100.7"
        for n in range(settings.login_ip_free_attempts + 12):
            try:
                attempt = await login.begin(
                    db, settings, CITIZEN, email=f"someone{n}@example.de", ip=office
                )
            except LoginBlocked:
                clock.advance(timedelta(seconds=settings.login_ip_max_wait_seconds))
                continue
            with pytest.raises(LoginFailed), db.unit_of_work() as session:
                login.conclude(session, settings, attempt, matched=False, ip=office)
        # Another citizen behind the same address: at most the short IP wait.
        clock.advance(timedelta(seconds=settings.login_ip_max_wait_seconds))
        opened = await login.password_login(
            db,
            settings,
            CITIZEN,
            email="paula@example.de",
            password=STRONG,
            ip=office,
            user_agent=None,
            replacing=None,
        )
        assert opened.token is not None

    on_own_loop(many_then_one())
