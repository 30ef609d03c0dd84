"""/metrics: off by default, behind a bearer token, counts summed over worker processes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from idp.app import create_app
from tests.accounts.conftest import STRONG, submit
from tests.conftest import make_settings
from tests.test_cli import run, serve_env, serving

TOKEN = "scrape-me-0123456789abcdef"


def counter(text: str, line_prefix: str) -> float:
    """The value of the one sample line starting with ``line_prefix`` (0 if absent)."""
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix)
    ]
    assert len(values) <= 1
    return values[0] if values else 0.0


@pytest.fixture
def metrics_client(db, keys_dir, services) -> TestClient:
    settings = make_settings(db.url, keys_dir, metrics_token=TOKEN)
    with TestClient(create_app(settings, clock=db.clock), base_url=settings.issuer) as client:
        yield client


def test_metrics_is_off_without_a_token(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer"]
)
def test_metrics_wants_the_bearer_token(metrics_client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = metrics_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "idp_" not in response.text


def test_a_short_token_is_refused_at_start():
    from idp.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="IDP_METRICS_TOKEN"):
        Settings.from_env({"IDP_METRICS_TOKEN": "short"})


def test_committed_events_are_counted_and_gauges_read(metrics_client, db, settings):
    from idp.accounts.registration import create_account

    with db.unit_of_work() as uow:
        create_account(uow, settings, email="metrik@example.de", password=STRONG, verified=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = metrics_client.get("/metrics", headers=auth)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert before.headers["cache-control"] == "no-store"
    assert re.search(r'^idp_info\{version="[^"]+"\} 1$', before.text, re.M)
    assert counter(before.text, 'idp_signing_keys{state="active",alg="ES256"}') == 1
    assert counter(before.text, 'idp_mail_outbox_messages{status="pending"}') >= 0
    successes = counter(before.text, 'idp_audit_events_total{event="login.success"}')
    failures = counter(before.text, 'idp_audit_events_total{event="login.failure"}')

    for password in (STRONG, "not the password at all", STRONG):
        metrics_client.cookies.clear()
        submit(
            metrics_client, "/login", "/login", {"email": "metrik@example.de", "password": password}
        )
    after = metrics_client.get("/metrics", headers=auth).text
    assert counter(after, 'idp_audit_events_total{event="login.success"}') == successes + 2
    assert counter(after, 'idp_audit_events_total{event="login.failure"}') == failures + 1
    assert counter(after, f'idp_process_resident_memory_bytes{{pid="{os.getpid()}"}}') > 10_000_000


def test_two_workers_report_together(tmp_path: Path):
    env = serve_env(tmp_path, IDP_WORKERS="2", IDP_CACHE_POLL_SECONDS="1", IDP_METRICS_TOKEN=TOKEN)
    env.pop("IDP_METRICS_DIR", None)
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("keys", "ensure", env=env).returncode == 0
    created = run(
        "users", "create", "--email", "zwei@example.de", "--password", STRONG, "--verified", env=env
    )
    assert created.returncode == 0, created.stderr
    base = env["IDP_ISSUER"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serving(env):
        logins = 6
        for _ in range(logins):  # a new connection each time, so both workers may serve
            with httpx.Client(base_url=base) as browser:
                done = submit(
                    browser, "/login", "/login", {"email": "zwei@example.de", "password": STRONG}
                )
                assert done.status_code == 303, done.text[:300]
        deadline = time.monotonic() + 20
        while True:
            text = httpx.get(f"{base}/metrics", headers=auth).text
            pids = re.findall(r'^idp_process_resident_memory_bytes\{pid="(\d+)"\}', text, re.M)
            total = counter(text, 'idp_audit_events_total{event="login.success"}')
            if (len(pids) == 2 and total == logins) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(pids) == 2, text
        assert total == logins, text


def test_each_run_on_a_port_reuses_and_empties_its_private_folder(tmp_path, monkeypatch):
    from idp.metrics import run_metrics_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    first = run_metrics_dir(8123)
    assert first.parent == tmp_path and (first.stat().st_mode & 0o777) == 0o700
    (first / "4242.json").write_text('{"pid": 4242, "events": {"login.success": 3}}')
    second = run_metrics_dir(8123)
    assert second == first
    assert list(second.glob("*.json")) == []
    assert run_metrics_dir(8124) != first


def test_a_folder_someone_else_could_write_is_not_used(tmp_path, monkeypatch):
    from idp.metrics import run_metrics_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    planted = tmp_path / f"idp-metrics-{os.getuid()}-8125"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    (planted / "1.json").write_text('{"pid": 1, "events": {"login.success": 1000}}')
    chosen = run_metrics_dir(8125)
    assert chosen != planted
    assert (chosen.stat().st_mode & 0o777) == 0o700
    assert (planted / "1.json").exists()  # left alone, not read
