"""Maintenance (idp/maintenance.py): every kind of transient row is deleted once it has
expired, by `idp maintenance run` and by the server in the background, one caller at
a time."""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select

from idp import maintenance
from idp.accounts import sessions
from idp.accounts.realms import CITIZEN
from idp.db.models import (
    AuthorizationCode,
    BackchannelLogout,
    ClientAssertionJti,
    Flow,
    Grant,
    LoginSession,
    LoginThrottle,
    MailMessage,
    RefreshToken,
    RevokedAccessToken,
)
from tests.conftest import LiveServer, free_port, make_settings
from tests.oidc import factories
from tests.test_cli import run

TABLES = {
    "flows": Flow,
    "login_sessions": LoginSession,
    "authorization_codes": AuthorizationCode,
    "grants": Grant,
    "refresh_tokens": RefreshToken,
    "revoked_access_tokens": RevokedAccessToken,
    "client_assertion_jtis": ClientAssertionJti,
    "mail_outbox": MailMessage,
    "backchannel_logouts": BackchannelLogout,
    "rate_limit_counters": LoginThrottle,
}


def _counts(db) -> dict[str, int]:
    with db.unit_of_work() as session:
        return {
            name: session.scalar(select(func.count()).select_from(model))
            for name, model in TABLES.items()
        }


def _transient_rows(db, settings, *, lifetime: timedelta) -> None:
    """One row of every transient kind, each expiring (or going stale) ``lifetime`` from
    now: mail sent, logout tokens delivered, a session and a counter as they are."""
    info = factories.client(db)
    account_id = factories.account(db)
    factories.login_token(db, account_id, settings)
    now = db.clock.now()
    until = now + lifetime
    grant_id = secrets.token_hex(8)
    with db.unit_of_work() as session:
        session.add(
            Flow(id=secrets.token_hex(8), kind="authorization", created_at=now, expires_at=until)
        )
        session.add(
            Grant(
                id=grant_id,
                client_id=info.client_id,
                account_id=account_id,
                scope="openid",
                auth_time=now,
                created_at=now,
                expires_at=until,
            )
        )
        session.flush()
        session.add(
            RefreshToken(
                token_digest=secrets.token_bytes(32),
                grant_id=grant_id,
                created_at=now,
                expires_at=until,
            )
        )
        session.add(
            AuthorizationCode(
                code_digest=secrets.token_bytes(32),
                client_id=info.client_id,
                account_id=account_id,
                redirect_uri=info.redirect_uri,
                scope="openid",
                auth_time=now,
                created_at=now,
                expires_at=until,
            )
        )
        session.add(RevokedAccessToken(jti=secrets.token_hex(8), revoked_at=now, expires_at=until))
        session.add(
            ClientAssertionJti(client_id=info.client_id, jti=secrets.token_hex(8), expires_at=until)
        )
        session.add(
            MailMessage(
                created_at=now,
                recipient="a@example.de",
                template="password_reset",
                locale="de",
                status="sent",
                next_attempt_at=now,
                sent_at=now,
            )
        )
        session.add(
            BackchannelLogout(
                client_id=info.client_id,
                uri="https://rp.example.de/logout",
                logout_token="t",
                created_at=now,
                next_attempt_at=None,
                delivered_at=now,
            )
        )
        session.add(LoginThrottle(key=f"ip:{secrets.token_hex(4)}", last_failure_at=now))


def test_every_kind_of_transient_row_is_kept_while_live_and_purged_once_expired(
    db, settings, clock
):
    _transient_rows(db, settings, lifetime=timedelta(minutes=5))
    assert all(_counts(db).values())

    assert not any(maintenance.run(db, settings).values())
    assert all(_counts(db).values())

    # The latest horizon: outboxes (7 days by default) and codes (a day past expiry).
    clock.advance(timedelta(days=settings.outbox_retention_days, minutes=10))
    purged = maintenance.run(db, settings)

    assert purged == dict.fromkeys(TABLES, 1)
    assert not any(_counts(db).values())


def test_a_session_goes_when_idle_or_ended_and_stays_while_in_use(db, settings, clock):
    used, idle, ended = (factories.account(db) for _ in range(3))
    tokens = {a: factories.login_token(db, a, settings) for a in (used, idle, ended)}
    with db.unit_of_work() as session:
        ending = sessions.load_session(session, tokens[ended], CITIZEN, settings)
        sessions.end_session(session, ending, "x")
    clock.advance(timedelta(minutes=settings.session_idle_minutes - 1))
    with db.unit_of_work() as session:
        sessions.load_session(session, tokens[used], CITIZEN, settings)
    clock.advance(timedelta(minutes=2))

    assert maintenance.run(db, settings)["login_sessions"] == 2

    with db.unit_of_work() as session:
        left = session.scalars(select(LoginSession.account_id)).all()
    assert left == [used]


def test_pending_mail_is_kept_however_old(db, settings, clock):
    with db.unit_of_work() as session:
        session.add(
            MailMessage(
                created_at=clock.now(),
                recipient="a@example.de",
                template="password_reset",
                locale="de",
                status="pending",
                next_attempt_at=clock.now(),
            )
        )
    clock.advance(timedelta(days=settings.outbox_retention_days + 30))
    assert maintenance.run(db, settings)["mail_outbox"] == 0


def test_an_expired_authorization_flow_is_purged_and_its_link_says_so(client, db, settings, clock):
    info = factories.client(db)
    response = client.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": info.client_id,
            "redirect_uri": info.redirect_uri,
            "scope": "openid",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    with db.unit_of_work() as session:
        flow_id = session.scalar(select(Flow.id))
    clock.advance(timedelta(minutes=31))

    assert maintenance.run(db, settings)["flows"] == 1

    page = client.get(f"/authorize/resume/{flow_id}")
    assert page.status_code == 400


def test_only_one_of_many_callers_at_once_gets_the_turn(db, settings, clock):
    callers = 8
    barrier = threading.Barrier(callers)

    def ask():
        barrier.wait()
        return maintenance.run_if_due(db, settings)

    with ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(lambda _: ask(), range(callers)))

    assert sum(answer is not None for answer in answers) == 1
    assert maintenance.run_if_due(db, settings) is None  # not due again within the interval
    clock.advance(timedelta(seconds=settings.maintenance_interval_seconds))
    assert maintenance.run_if_due(db, settings) is not None


def test_the_server_purges_expired_rows_in_the_background(db, keys_dir, clock):
    port = free_port()
    settings = make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        maintenance_interval_seconds=1,
    )
    past = clock.now() - timedelta(minutes=1)
    with db.unit_of_work() as session:
        session.add(Flow(id="old", kind="authorization", created_at=past, expires_at=past))
    with LiveServer(settings, clock):
        deadline = time.monotonic() + 15
        while _counts(db)["flows"] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _counts(db)["flows"] == 0


def test_the_maintenance_command_prints_what_it_purged(db, settings, clock):
    past = clock.now() - timedelta(minutes=1)
    with db.unit_of_work() as session:
        session.add(Flow(id="old", kind="authorization", created_at=past, expires_at=past))
        session.add(
            Flow(
                id="live",
                kind="authorization",
                created_at=past,
                expires_at=clock.now() + timedelta(minutes=30),
            )
        )
    env = {"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(settings.keys_dir)}

    result = run("maintenance", "run", "--json", env=env)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["purged"]["flows"] == 1 and report["total"] == 1
    with db.unit_of_work() as session:
        assert session.scalars(select(Flow.id)).all() == ["live"]
    text = run("maintenance", "run", env=env)
    assert text.returncode == 0 and "flows: 0" in text.stdout
