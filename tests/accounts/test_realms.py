"""Kinds of principal: citizens and staff share sessions, cookies, throttles and second
factors, each realm keeping its own (idp.accounts.realms)."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from idp.accounts import factors, login, throttle, totp
from idp.accounts.errors import LoginBlocked, LoginFailed
from idp.accounts.realms import CITIZEN, STAFF, of_kind
from idp.accounts.registration import create_account
from idp.accounts.sessions import load_session
from idp.accounts.signin import PASSWORD, WrongRealm, close_login_session, open_login_session
from idp.db.models import Account, AuditEvent, LoginSession
from idp.web.session import cookie_name
from tests.accounts.conftest import FAST_HASH, STRONG
from tests.assurance.factories import secret_box
from tests.conftest import make_settings, on_own_loop

CLERK = "clerk@stadt.example.de"
CITIZEN_EMAIL = "paula@example.de"


@pytest.fixture
def settings(db, keys_dir):
    return make_settings(db.url, keys_dir, **FAST_HASH)


def _account(db, settings, email: str, kind: str = "citizen") -> int:
    with db.unit_of_work() as session:
        account = create_account(session, settings, email=email, password=STRONG, verified=True)
        account.kind = kind
        return account.id


def _open(db, settings, realm, account_id: int) -> str:
    with db.unit_of_work() as session:
        return open_login_session(
            session, settings, realm, account_id, PASSWORD, ip=None, user_agent=None, replacing=None
        ).token


def test_a_staff_session_is_not_accepted_where_a_citizens_is_expected_nor_the_other_way(
    db, settings
):
    staff_token = _open(db, settings, STAFF, _account(db, settings, CLERK, "staff"))
    citizen_token = _open(db, settings, CITIZEN, _account(db, settings, CITIZEN_EMAIL))

    with db.unit_of_work() as session:
        assert load_session(session, staff_token, CITIZEN, settings) is None
        assert load_session(session, citizen_token, STAFF, settings) is None
        assert load_session(session, staff_token, STAFF, settings).kind == "staff"
        assert load_session(session, citizen_token, CITIZEN, settings).kind == "citizen"
    # Shown to the wrong realm, a session is refused, not ended.
    with db.unit_of_work() as session:
        assert all(row.ended_at is None for row in session.scalars(select(LoginSession)))


def test_a_session_is_never_opened_for_an_account_of_another_realm(db, settings):
    citizen_id = _account(db, settings, CITIZEN_EMAIL)
    clerk_id = _account(db, settings, CLERK, "staff")

    for realm, account_id in ((STAFF, citizen_id), (CITIZEN, clerk_id)):
        with pytest.raises(WrongRealm), db.unit_of_work() as session:
            open_login_session(
                session,
                settings,
                realm,
                account_id,
                PASSWORD,
                ip=None,
                user_agent=None,
                replacing=None,
            )

    with db.unit_of_work() as session:
        assert session.scalars(select(LoginSession)).all() == []
        assert session.scalars(select(Account.last_login_at)).all() == [None, None]


def test_a_session_of_one_realm_does_not_replace_or_close_as_another(db, settings):
    citizen_token = _open(db, settings, CITIZEN, _account(db, settings, CITIZEN_EMAIL))
    clerk_id = _account(db, settings, CLERK, "staff")
    with db.unit_of_work() as session:
        citizens = load_session(session, citizen_token, CITIZEN, settings)
        with pytest.raises(WrongRealm):
            open_login_session(
                session,
                settings,
                STAFF,
                clerk_id,
                PASSWORD,
                ip=None,
                user_agent=None,
                replacing=citizens,
            )
        with pytest.raises(WrongRealm):
            close_login_session(session, STAFF, citizens, ip=None)


def test_a_staff_login_finds_only_staff_accounts_and_opens_a_staff_session(db, settings):
    _account(db, settings, CITIZEN_EMAIL)
    clerk_id = _account(db, settings, CLERK, "staff")

    async def log_in(realm, email):
        return await login.password_login(
            db,
            settings,
            realm,
            email=email,
            password=STRONG,
            ip="192.0.2.9",
            user_agent=None,
            replacing=None,
        )

    # The right password of a citizen's account is no staff login, nor a clerk's a citizen's.
    with pytest.raises(LoginFailed):
        on_own_loop(log_in(STAFF, CITIZEN_EMAIL))
    with pytest.raises(LoginFailed):
        on_own_loop(log_in(CITIZEN, CLERK))
    opened = on_own_loop(log_in(STAFF, CLERK))

    with db.unit_of_work() as session:
        row = session.get_one(LoginSession, opened.id)
        account = session.get_one(Account, clerk_id)
        events = [e.event for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert (row.account_id, row.kind) == (clerk_id, "staff")
    assert account.last_login_at == row.created_at
    assert row.expires_at == row.created_at + timedelta(hours=settings.staff_session_max_hours)
    assert events.count("staff.login.failure") == 1 and events.count("login.failure") == 1
    assert events[-1] == "staff.login.success"


def test_a_staff_session_ends_after_the_staff_idle_time_a_citizens_lives_on(db, settings, clock):
    assert settings.staff_session_idle_minutes < settings.session_idle_minutes
    staff_token = _open(db, settings, STAFF, _account(db, settings, CLERK, "staff"))
    citizen_token = _open(db, settings, CITIZEN, _account(db, settings, CITIZEN_EMAIL))

    clock.advance(timedelta(minutes=settings.staff_session_idle_minutes + 1))

    with db.unit_of_work() as session:
        assert load_session(session, staff_token, STAFF, settings) is None
        assert load_session(session, citizen_token, CITIZEN, settings) is not None
    with db.unit_of_work() as session:
        ended = session.scalars(select(LoginSession).where(LoginSession.kind == "staff")).one()
        assert ended.end_reason == "idle"


def test_throttles_for_one_email_in_the_two_realms_count_apart(db, keys_dir):
    settings = make_settings(db.url, keys_dir, login_lockout_attempts=3, **FAST_HASH)
    _account(db, settings, CITIZEN_EMAIL)
    assert throttle.email_key(STAFF, CITIZEN_EMAIL) != throttle.email_key(CITIZEN, CITIZEN_EMAIL)
    assert throttle.ip_key(STAFF, "192.0.2.1") != throttle.ip_key(CITIZEN, "192.0.2.1")

    async def wrong(realm) -> None:
        await login.password_login(
            db,
            settings,
            realm,
            email=CITIZEN_EMAIL,
            password="falsch",
            ip="192.0.2.1",
            user_agent=None,
            replacing=None,
        )

    async def wrong_until_locked(realm) -> None:
        for _ in range(settings.login_lockout_attempts):
            with pytest.raises((LoginFailed, LoginBlocked)):
                await wrong(realm)
        with pytest.raises(LoginBlocked):
            await wrong(realm)

    # Someone locks the address at the clerk login: the citizen still logs in.
    on_own_loop(wrong_until_locked(STAFF))
    opened = on_own_loop(
        login.password_login(
            db,
            settings,
            CITIZEN,
            email=CITIZEN_EMAIL,
            password=STRONG,
            ip="192.0.2.1",
            user_agent=None,
            replacing=None,
        )
    )
    assert opened.token


def test_second_factors_work_alike_for_a_staff_account(db, settings, clock):
    clerk_id = _account(db, settings, CLERK, "staff")
    box = secret_box(settings)
    with db.unit_of_work() as session:
        clerk = session.get_one(Account, clerk_id)
        enrolment = totp.begin(session, clerk, box, settings.issuer)
        app = pyotp.TOTP(enrolment.secret)
        first = app.at(clock.now() - timedelta(seconds=totp.STEP))
        assert totp.confirm(session, clerk, enrolment.flow_id, first, box, "low_session")
    current = app.at(clock.now())
    wrong = f"{(int(current) + 1) % 10**6:06d}"
    with db.unit_of_work() as session:
        clerk = session.get_one(Account, clerk_id)
        assert totp.verify(session, clerk, wrong, box) is None
    with db.unit_of_work() as session:
        (factor,) = factors.factors(session, clerk_id)
        assert factor.failures == 1
        used = totp.verify(session, session.get_one(Account, clerk_id), current, box)
    assert used is not None and (used.account_id, used.failures) == (clerk_id, 0)


def test_each_realm_has_its_cookie_scoped_to_its_pages(db, keys_dir):
    plain = make_settings(db.url, keys_dir)
    secure = make_settings(db.url, keys_dir, issuer="https://id.example.de")
    assert (cookie_name(plain, CITIZEN), cookie_name(plain, STAFF)) == ("idp_session", "idp_clerk")
    # A __Host- cookie must have Path=/: the staff cookie, sent under /clerk only, is __Secure-.
    assert cookie_name(secure, CITIZEN) == "__Host-idp_session"
    assert cookie_name(secure, STAFF) == "__Secure-idp_clerk"
    assert (CITIZEN.path, STAFF.path) == ("/", "/clerk")
    assert of_kind("staff") is STAFF and of_kind("citizen") is CITIZEN
