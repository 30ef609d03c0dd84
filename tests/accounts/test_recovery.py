"""Password reset by email, and the mail outbox surviving a killed server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
from sqlalchemy import select

from idp.accounts.registration import create_account
from idp.db.models import LoginSession, MailMessage
from tests.accounts.conftest import FAST_HASH, STRONG, csrf_token, link, login, submit
from tests.conftest import free_port

NEW = "Neues Passwort für das Bürgerbüro"


def _create(db, settings, address="olga@example.de"):
    with db.unit_of_work() as session:
        create_account(session, settings, email=address, password=STRONG, verified=True)


def _reset_link(client, mailbox, address="olga@example.de"):
    submit(client, "/password/forgot", "/password/forgot", {"email": address})
    [mail] = mailbox.wait_for(address)
    assert mail["Subject"] == "Passwort zurücksetzen"
    return link(mail, "/password/reset")


def _set_password(client, url, password):
    page = client.get(url)
    assert page.status_code == 200
    flow, token = url.split("flow=")[1].split("&token=")
    return client.post(
        "/password/reset",
        data={
            "flow": flow,
            "token": token,
            "password": password,
            "csrf_token": csrf_token(page.text),
        },
    )


def test_reset_sets_a_new_password_ends_sessions_and_tells_the_citizen(
    app_client, account_settings, db, mailbox
):
    _create(db, account_settings)
    login(app_client, "olga@example.de")
    url = _reset_link(app_client, mailbox)
    done = _set_password(app_client, url, NEW)
    assert done.status_code == 200 and "Passwort geändert" in done.text
    with db.unit_of_work() as session:
        assert all(
            row.end_reason == "password_reset" for row in session.scalars(select(LoginSession))
        )
    _, changed = mailbox.wait_for("olga@example.de", count=2)
    assert changed["Subject"] == "Ihr Passwort wurde geändert"
    assert login(app_client, "olga@example.de").status_code == 400
    assert login(app_client, "olga@example.de", NEW).status_code == 303
    # Single use.
    assert app_client.get(url).status_code == 400


def test_a_reset_link_expires_after_an_hour(app_client, account_settings, db, mailbox, clock):
    _create(db, account_settings)
    url = _reset_link(app_client, mailbox)
    clock.advance(timedelta(minutes=61))
    response = app_client.get(url)
    assert response.status_code == 400
    assert "abgelaufen" in response.text


def test_the_new_password_must_follow_the_rules(app_client, account_settings, db, mailbox):
    _create(db, account_settings)
    url = _reset_link(app_client, mailbox)
    response = _set_password(app_client, url, "passwort")
    assert response.status_code == 400
    assert "sehr verbreitet" in response.text


def _serve(settings_env: dict[str, str], port: int) -> subprocess.Popen:
    env = {**os.environ, **settings_env, "IDP_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("idp serve did not start")


def _env(db, keys_dir, port, smtp_port, tmp_path) -> dict[str, str]:
    return {
        "IDP_DATABASE_URL": db.url,
        "IDP_KEYS_DIR": str(keys_dir),
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "IDP_SMTP_HOST": "127.0.0.1",
        "IDP_SMTP_PORT": str(smtp_port),
        "IDP_SMTP_SECURITY": "none",
        "IDP_MAIL_POLL_SECONDS": "1",
        "IDP_MAIL_DIR": str(tmp_path / "mail"),
        "IDP_ARGON2_MEMORY_KIB": "19456",
    }


def _wait_for_failed_attempt(db) -> None:
    """Until the server tried its (unreachable) relay once and let go of the mail."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.unit_of_work() as session:
            row = session.scalars(select(MailMessage)).first()
            if row is not None and row.attempts >= 1 and row.claimed_until is None:
                return
        time.sleep(0.05)
    raise AssertionError("the server never tried to deliver")


def test_a_sender_that_dies_while_delivering_leaves_the_mail_to_others(
    account_settings, db, mailbox, clock
):
    from idp.mail.outbox import _claim_next, enqueue, send_pending

    with db.unit_of_work() as session:
        context = {"reset_link": "x"}
        enqueue(session, account_settings, "nina@example.de", "password_changed", "en", context)
    assert _claim_next(db, 0, ignore_backoff=False) is not None  # a sender claims it, dies
    assert send_pending(db, account_settings) == 0
    clock.advance(timedelta(minutes=2))
    assert send_pending(db, account_settings) == 1
    [mail] = mailbox.wait_for("nina@example.de")
    assert mail["Subject"] == "Your password was changed"


def test_a_server_killed_before_delivery_loses_no_mail(db, keys_dir, mailbox, tmp_path):
    port = free_port()
    # The first server's SMTP relay is down: the registration commits, the mail waits.
    process = _serve(_env(db, keys_dir, port, free_port(), tmp_path), port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            page = client.get("/register")
            response = client.post(
                "/register",
                data={
                    "email": "kim@example.de",
                    "password": STRONG,
                    "privacy_consent": "yes",
                    "csrf_token": csrf_token(page.text),
                },
            )
            assert response.status_code == 303
        _wait_for_failed_attempt(db)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with db.unit_of_work() as session:
        [row] = session.scalars(select(MailMessage)).all()
        assert row.status == "pending"
    assert mailbox.to("kim@example.de") == []

    # Restarted with its relay back, the server delivers it.
    process = _serve(_env(db, keys_dir, port, mailbox.port, tmp_path), port)
    try:
        [mail] = mailbox.wait_for("kim@example.de", timeout=30)
    finally:
        process.terminate()
        process.wait()
    assert "/verify-email?flow=" in mail.get_content()


def test_send_pending_delivers_what_a_killed_server_left(db, keys_dir, mailbox, tmp_path):
    port = free_port()
    process = _serve(_env(db, keys_dir, port, free_port(), tmp_path), port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            page = client.get("/password/forgot")
            with db.unit_of_work() as session:
                create_account(
                    session,
                    _settings(db, keys_dir),
                    email="lea@example.de",
                    password=STRONG,
                    verified=True,
                )
            client.post(
                "/password/forgot",
                data={"email": "lea@example.de", "csrf_token": csrf_token(page.text)},
            )
        _wait_for_failed_attempt(db)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    env = {**os.environ, **_env(db, keys_dir, port, mailbox.port, tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "idp", "mail", "send-pending"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "sent 1 mail(s), 0 still pending" in result.stdout
    [mail] = mailbox.wait_for("lea@example.de")
    assert "/password/reset?flow=" in mail.get_content()


def _settings(db, keys_dir):
    from tests.conftest import make_settings

    return make_settings(db.url, keys_dir, **FAST_HASH)


def test_users_create_prints_the_account_as_json(db, keys_dir, tmp_path):
    env = {**os.environ, "IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "idp",
            "users",
            "create",
            "--email",
            "Max@Example.de",
            "--password",
            STRONG,
            "--verified",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    account = json.loads(result.stdout)
    assert account["email"] == "max@example.de"
    assert account["email_verified"] is True and account["proofing_level"] == "low"
    weak = subprocess.run(
        [
            sys.executable,
            "-m",
            "idp",
            "users",
            "create",
            "--email",
            "x@example.de",
            "--password",
            "passwort",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert weak.returncode == 1
    assert "very common" in weak.stderr
