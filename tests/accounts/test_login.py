"""Login, logout, sessions, brute-force protection and account enumeration."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from litestar.testing import TestClient
from sqlalchemy import delete, select

from idp.accounts.passwords import Passwords
from idp.accounts.registration import create_account
from idp.app import create_app
from idp.audit import events as audit
from idp.db.models import Account, AuditEvent, AuditHead, LoginSession, LoginThrottle
from tests.accounts.conftest import STRONG, csrf_token, login, register, submit
from tests.conftest import on_own_loop


def _create(db, settings, address="paula@example.de", password=STRONG, verified=True):
    with db.unit_of_work() as session:
        return create_account(
            session, settings, email=address, password=password, verified=verified
        ).id


def _events(db, name):
    with db.unit_of_work() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def test_login_opens_a_new_session_and_redirects_to_return_to(app_client, account_settings, db):
    _create(db, account_settings)
    response = login(app_client, "Paula@Example.de", return_to="/authorize/resume/abc")
    assert response.status_code == 303
    assert response.headers["location"] == "/authorize/resume/abc"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("idp_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    first = app_client.cookies["idp_session"]
    # Logging in again replaces the session (fixation defence) and ends the old one.
    login(app_client, "paula@example.de")
    assert app_client.cookies["idp_session"] != first
    with db.unit_of_work() as session:
        rows = session.scalars(select(LoginSession).order_by(LoginSession.id)).all()
    assert rows[0].end_reason == "replaced" and rows[1].ended_at is None
    assert rows[1].methods[0]["method"] == "pwd"
    assert len(_events(db, "login.success")) == 2


def test_a_login_keeps_its_time_its_browser_and_an_audit_event(
    app_client, account_settings, db, clock
):
    account_id = _create(db, account_settings)
    before = clock.now()
    response = submit(
        app_client,
        "/login",
        "/login",
        {"email": "paula@example.de", "password": STRONG},
        headers={"user-agent": "Firefox/140.0"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    after = clock.now()
    with db.unit_of_work() as session:
        account = session.get(Account, account_id)
        (row,) = session.scalars(select(LoginSession)).all()
        assert audit.verify(session) is None
    (event,) = _events(db, "login.success")
    assert row.account_id == account_id and row.ended_at is None
    assert before <= row.created_at == row.auth_time == row.last_seen_at <= after
    assert account.last_login_at == row.created_at
    assert row.expires_at == row.created_at + timedelta(hours=account_settings.session_max_hours)
    assert row.methods == [{"method": "pwd", "at": row.created_at.isoformat()}]
    assert row.user_agent == "Firefox/140.0" and row.ip == "testclient"
    assert row.token_digest == hashlib.sha256(app_client.cookies["idp_session"].encode()).digest()
    assert (event.account_id, event.ip, event.data) == (account_id, "testclient", {"amr": ["pwd"]})


def test_a_login_without_the_audit_chains_head_row_starts_the_chain(
    app_client, account_settings, db
):
    _create(db, account_settings)
    with db.unit_of_work() as session:
        session.execute(delete(AuditHead))
        session.execute(delete(AuditEvent))
    assert login(app_client, "paula@example.de").status_code == 303
    assert app_client.get("/account").status_code == 200
    with db.unit_of_work() as session:
        assert audit.verify(session) is None
        head = session.get(AuditHead, 1)
    (event,) = _events(db, "login.success")
    assert event.prev_hash == audit.GENESIS and head.last_id == event.id


def test_an_open_redirect_is_refused(app_client, account_settings, db):
    _create(db, account_settings)
    response = login(app_client, "paula@example.de", return_to="//evil.example/")
    assert response.headers["location"] == "/account"


def test_logout_ends_the_session(app_client, account_settings, db):
    _create(db, account_settings)
    login(app_client, "paula@example.de")
    assert "paula@example.de" in app_client.get("/account").text
    response = submit(app_client, "/account", "/logout", {})
    assert "Sie sind abgemeldet" in response.text
    assert app_client.get("/account", follow_redirects=False).status_code == 303
    assert _events(db, "logout")


def test_a_wrong_password_says_the_same_as_an_unknown_email(app_client, account_settings, db):
    _create(db, account_settings)
    known = login(app_client, "paula@example.de", "falsches Passwort 123")
    unknown = login(app_client, "niemand@example.de", "falsches Passwort 123")
    assert known.status_code == unknown.status_code == 400
    assert "E-Mail-Adresse oder Passwort ist falsch" in known.text
    assert known.text.replace("paula", "X") == unknown.text.replace("niemand", "X")


def test_register_and_reset_answer_the_same_for_known_and_unknown(
    app_client, account_settings, db, mailbox
):
    _create(db, account_settings)

    def normalised(html: str) -> str:
        html = re.sub(r'name="(flow|csrf_token)" value="[^"]+"', r'name="\1" value=""', html)
        html = re.sub(r"flow=[\w-]+", "flow=", html)
        return html.replace("paula@example.de", "X").replace("neu@example.de", "X")

    known = register(app_client, "paula@example.de")
    unknown = register(app_client, "neu@example.de")
    assert known.status_code == unknown.status_code == 303
    assert normalised(app_client.get(known.headers["location"]).text) == normalised(
        app_client.get(unknown.headers["location"]).text
    )
    # The owner of the known address is told by mail instead.
    [mail] = mailbox.wait_for("paula@example.de")
    assert mail["Subject"] == "Sie haben bereits ein Servicekonto"
    mailbox.wait_for("neu@example.de")

    reset_known = submit(
        app_client, "/password/forgot", "/password/forgot", {"email": "paula@example.de"}
    )
    reset_unknown = submit(
        app_client, "/password/forgot", "/password/forgot", {"email": "nobody@example.de"}
    )
    assert reset_known.status_code == reset_unknown.status_code == 200
    assert reset_known.text == reset_unknown.text


def test_an_unknown_email_costs_a_password_hash_too(account_settings):
    passwords = Passwords(1, 1024, 1)
    assert passwords.verify(None, "anything") is False
    assert passwords.dummy_hash.startswith("$argon2id$")


def test_hashing_stays_in_the_hashers_own_threads_whoever_asks():
    passwords = Passwords(1, 1024, 1, threads=2)
    hashed = passwords.hash(STRONG)
    hashing_threads: set[str] = set()

    class Spy:
        def verify(self, password_hash: str, password: str) -> bool:
            hashing_threads.add(threading.current_thread().name)
            return real.verify(password_hash, password)

    real, passwords.hasher = passwords.hasher, Spy()
    with ThreadPoolExecutor(8) as requests:
        results = list(requests.map(lambda _: passwords.verify(hashed, STRONG), range(32)))

    async def awaited() -> list[bool]:  # as the login page asks, from the event loop
        return list(
            await asyncio.gather(*(passwords.verify_awaited(hashed, STRONG) for _ in range(8)))
        )

    results += on_own_loop(awaited())
    assert len(results) == 40 and all(results)
    assert 1 <= len(hashing_threads) <= 2
    assert all(name.startswith("argon2id") for name in hashing_threads)


def test_a_disabled_account_cannot_log_in_with_its_own_password(
    app_client, account_settings, db, clock
):
    account_id = _create(db, account_settings)
    with db.unit_of_work() as session:
        session.get(Account, account_id).disabled_at = clock.now()
    refused = login(app_client, "paula@example.de")
    unknown = login(app_client, "niemand@example.de")
    assert refused.status_code == unknown.status_code == 400
    assert refused.text.replace("paula", "X") == unknown.text.replace("niemand", "X")
    assert "idp_session" not in app_client.cookies
    (failure,) = [e for e in _events(db, "login.failure") if e.account_id == account_id]
    assert failure.data["reason"] == "password"


def test_a_hash_with_old_parameters_is_replaced_at_login(app_client, account_settings, db):
    older = Passwords(1, 2048, 1)
    with db.unit_of_work() as session:
        account_id = _create(db, account_settings)
        session.get(Account, account_id).password_hash = older.hash(STRONG)
    assert login(app_client, "paula@example.de").status_code == 303
    with db.unit_of_work() as session:
        new_hash = session.get(Account, account_id).password_hash
    assert "m=1024" in new_hash and "m=2048" not in new_hash


def test_defaults_meet_owasps_argon2id_recommendation():
    from idp.settings import Settings

    settings = Settings.from_env({})
    assert settings.argon2_memory_kib >= 19456 and settings.argon2_time_cost >= 2


def test_twenty_wrong_passwords_lock_the_account_across_two_app_instances(
    account_settings, db, clock
):
    _create(db, account_settings)
    # Two app instances on one database, like two nodes behind a load balancer.
    with (
        TestClient(
            create_app(account_settings, clock=clock), base_url=account_settings.issuer
        ) as one,
        TestClient(
            create_app(account_settings, clock=clock), base_url=account_settings.issuer
        ) as two,
    ):
        for attempt in range(19):
            response = login(one if attempt % 2 else two, "paula@example.de", "falsch falsch")
            assert response.status_code in (400, 429)
            if response.status_code == 429:
                clock.advance(timedelta(minutes=16))
                response = login(one if attempt % 2 else two, "paula@example.de", "falsch falsch")
            assert response.status_code == 400, attempt
            # wait out the doubling back-off before the next try
            clock.advance(timedelta(minutes=16))
        locked = login(one, "paula@example.de", "falsch falsch")
        assert locked.status_code == 429
        assert "für 15 Minuten gesperrt" in locked.text
        # Even the right password is refused on the other instance while locked.
        refused = login(two, "paula@example.de")
        assert refused.status_code == 429
        assert "Bitte warten Sie" in refused.text
        assert _events(db, "login.lockout")
        clock.advance(timedelta(minutes=16))
        assert login(two, "paula@example.de").status_code == 303


def test_back_off_tells_how_long_to_wait(app_client, account_settings, db):
    _create(db, account_settings)
    for _ in range(account_settings.login_free_attempts):
        login(app_client, "paula@example.de", "falsch falsch")
    response = login(app_client, "paula@example.de", "falsch falsch")
    assert response.status_code == 429
    assert re.search(r"Bitte warten Sie \d+ Sekunde", response.text)
    failures = _events(db, "login.failure")
    assert len(failures) == account_settings.login_free_attempts
    assert _events(db, "login.blocked")


def test_unknown_emails_are_locked_like_known_ones(app_client, account_settings, db):
    for _ in range(account_settings.login_free_attempts):
        login(app_client, "niemand@example.de", "falsch falsch")
    assert login(app_client, "niemand@example.de", "falsch falsch").status_code == 429


def test_the_login_hint_fills_in_the_email(app_client):
    page = app_client.get("/login", params={"login_hint": "a@example.de", "lang": "en"})
    assert 'value="a@example.de"' in page.text
    assert "Log in" in page.text
    assert csrf_token(page.text)


def test_a_login_clears_the_failures_counted_before_it(app_client, account_settings, db):
    _create(db, account_settings)
    for _ in range(account_settings.login_free_attempts - 1):
        assert login(app_client, "paula@example.de", "falsch falsch").status_code == 400
    assert login(app_client, "paula@example.de").status_code == 303
    # The count starts over: as many wrong passwords again before any wait.
    for _ in range(account_settings.login_free_attempts - 1):
        assert login(app_client, "paula@example.de", "falsch falsch").status_code == 400
    with db.unit_of_work() as session:
        counters = session.scalars(select(LoginThrottle)).all()
    email_counter = next(c for c in counters if c.key.startswith("email:"))
    assert email_counter.failures == account_settings.login_free_attempts - 1


def test_concurrent_logins_keep_the_audit_trail_one_chain(account_settings, db, clock):
    for n in range(4):
        _create(db, account_settings, f"person{n}@example.de")

    # The apps are built here, not in the threads: litestar's App looks for its optional
    # pydantic plugin with an import that fails when pydantic is absent, and four threads
    # importing the same missing module at once can see it half made (an ImportError that
    # is not the MissingDependencyException litestar expects). CI hit that once.
    apps = [create_app(account_settings, clock=clock) for _ in range(4)]

    def attempts(n: int) -> None:
        with TestClient(apps[n], base_url=account_settings.issuer) as client:
            for attempt in range(3):
                password = STRONG if attempt != 1 else "falsch falsch"
                login(client, f"person{n}@example.de", password)

    with ThreadPoolExecutor(4) as browsers:
        list(browsers.map(attempts, range(4)))
    with db.unit_of_work() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [e.event for e in events].count("login.success") == 8
        assert [e.event for e in events].count("login.failure") == 4
        assert audit.verify(session) is None
        # and the chain notices an edited event
        events[3].data = {**events[3].data, "edited": True}
    with db.unit_of_work() as session:
        assert audit.verify(session) == events[3].id


def test_the_audit_chain_starts_at_genesis_without_its_head_row(db):
    with db.unit_of_work() as session:
        session.execute(delete(AuditHead))
    with db.unit_of_work() as session:
        first = audit.record(session, "test.first", data={"n": 1})
        second = audit.record(session, "test.second", data={"n": 2})
    with db.unit_of_work() as session:
        assert audit.verify(session) is None
        head = session.get(AuditHead, 1)
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [r.id for r in rows] == [first, second]
    assert rows[0].prev_hash == audit.GENESIS and rows[1].prev_hash == rows[0].hash
    assert (head.last_id, head.last_hash) == (second, rows[1].hash)


def test_login_rotates_the_csrf_cookie_and_a_form_of_another_tab_fails_readably(
    app_client, account_settings, db
):
    # The CSRF pre-session cookie outlived the login: a token learnt before it stayed good.
    _create(db, account_settings)
    other_tab = app_client.get("/password/forgot").text
    before = app_client.cookies["idp_csrf"]
    response = login(app_client, "paula@example.de")
    assert response.status_code == 303
    assert "idp_csrf=" in response.headers["set-cookie"]
    after = app_client.cookies["idp_csrf"]
    assert after != before

    stale = app_client.post(
        "/password/forgot", data={"email": "paula@example.de", "csrf_token": csrf_token(other_tab)}
    )
    assert stale.status_code == 403
    assert "Das Formular ist abgelaufen" in stale.text
    fresh = submit(app_client, "/logout", "/logout", {}, follow_redirects=False)
    assert fresh.status_code in (200, 303)
    assert app_client.get("/account", follow_redirects=False).status_code == 303, "logged out"


def test_a_login_that_fails_keeps_the_csrf_cookie(app_client, account_settings, db):
    _create(db, account_settings)
    app_client.get("/login")
    before = app_client.cookies["idp_csrf"]
    assert login(app_client, "paula@example.de", "Falsches Passwort 123").status_code == 400
    assert app_client.cookies["idp_csrf"] == before
