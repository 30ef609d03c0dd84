"""The flows a stranger can open without an account (password reset, registration) count
against the client address's IDP_FLOWS_PER_IP_MINUTE, as /authorize's do."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from litestar.testing import TestClient
from sqlalchemy import func, select

from idp.app import create_app
from idp.db.models import Flow
from tests.accounts.conftest import FAST_HASH, STRONG, csrf_token, submit
from tests.conftest import LiveServer, free_port, make_settings

LIMIT = 3


def _flows(db) -> int:
    with db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Flow))


def _client(db, keys_dir, tmp_path) -> TestClient:
    settings = make_settings(
        db.url, keys_dir, flows_per_ip_minute=LIMIT, mail_dir=tmp_path / "mail", **FAST_HASH
    )
    return TestClient(create_app(settings, clock=db.clock), base_url=settings.issuer)


def test_reset_requests_for_unknown_addresses_are_limited_per_address(db, keys_dir, tmp_path):
    with _client(db, keys_dir, tmp_path) as client:
        for n in range(LIMIT):
            sent = submit(client, "/password/forgot", "/password/forgot", {"email": f"{n}@x.de"})
            assert sent.status_code == 200
        refused = submit(client, "/password/forgot", "/password/forgot", {"email": "9@x.de"})

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "zu viele Anfragen" in refused.text
    assert _flows(db) == LIMIT


def test_registrations_are_limited_per_address(db, keys_dir, tmp_path):
    with _client(db, keys_dir, tmp_path) as client:
        answers = [
            submit(
                client,
                "/register",
                "/register",
                {"email": f"{n}@x.de", "password": STRONG, "privacy_consent": "yes"},
                follow_redirects=False,
            )
            for n in range(LIMIT + 1)
        ]

    assert [a.status_code for a in answers] == [303] * LIMIT + [429]
    assert "retry-after" in answers[-1].headers
    assert _flows(db) == LIMIT


def test_the_reset_limit_holds_for_requests_at_once(db, keys_dir, tmp_path, clock):
    port = free_port()
    settings = make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        flows_per_ip_minute=LIMIT,
        mail_dir=tmp_path / "mail",
    )
    fired = 10
    with (
        LiveServer(settings, clock) as server,
        httpx.Client(base_url=server.url, timeout=15) as http,
    ):
        token = csrf_token(http.get("/password/forgot").text)
        barrier = threading.Barrier(fired)

        def ask(n: int) -> int:
            barrier.wait()
            form = {"email": f"{n}@x.de", "csrf_token": token}
            return http.post("/password/forgot", data=form).status_code

        with ThreadPoolExecutor(fired) as pool:
            statuses = sorted(pool.map(ask, range(fired)))

    assert statuses == [200] * LIMIT + [429] * (fired - LIMIT)
    assert _flows(db) == LIMIT
