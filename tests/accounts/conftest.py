"""Fixtures for the accounts part: a real SMTP server (aiosmtpd) in the test
process, settings that deliver to it, and the app over HTTP."""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage as Message

import pytest
from aiosmtpd.controller import Controller
from litestar.testing import TestClient

from idp.app import create_app
from idp.settings import Settings
from tests.conftest import LiveServer, free_port, make_settings

# Cheap argon2 parameters keep the suite fast; the defaults are tested separately.
FAST_HASH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


class Mailbox:
    """What the SMTP server received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.condition = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.condition:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
            self.condition.notify_all()
        return "250 OK"

    def wait_for(self, to: str, count: int = 1, timeout: float = 15) -> list[Message]:
        """The first ``count`` mails to ``to``, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                found = [m for m in self.messages if m["To"] == to]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail {count} to {to} within {timeout}s: {found}")
                self.condition.wait(left)

    def to(self, address: str) -> list[Message]:
        with self.condition:
            return [m for m in self.messages if m["To"] == address]


def body(message: Message) -> str:
    """The text of a mail."""
    return message.get_content()


def link(message: Message, path: str) -> str:
    """The link to ``path`` in a mail, relative to the issuer."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(path) + r"[^\s]*)", body(message))
    assert match, f"no link to {path} in: {body(message)}"
    return match.group(1)


def code(message: Message) -> str:
    match = re.search(r"^\s+(\d{6})\s*$", body(message), re.MULTILINE)
    assert match, body(message)
    return match.group(1)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def submit(client: TestClient, page: str, action: str, data: dict[str, str], **kwargs):
    """Open ``page``, then post ``data`` to ``action`` with the page's CSRF token."""
    html = client.get(page).text
    return client.post(action, data={**data, "csrf_token": csrf_token(html)}, **kwargs)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    handler = Mailbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


def mailing_settings(db, keys_dir, mailbox, tmp_path, **overrides) -> Settings:
    """Test settings that deliver mail to ``mailbox`` over SMTP, with cheap hashing."""
    return make_settings(
        db.url,
        keys_dir,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        mail_poll_seconds=1,
        mail_dir=tmp_path / "mail",
        **FAST_HASH,
        **overrides,
    )


def served_settings(db, keys_dir, mailbox, tmp_path) -> Settings:
    """:func:`mailing_settings` for a server on a free loopback port (its URL the issuer)."""
    port = free_port()
    return mailing_settings(
        db, keys_dir, mailbox, tmp_path, issuer=f"http://127.0.0.1:{port}", port=port
    )


@pytest.fixture
def account_settings(db, keys_dir, mailbox, tmp_path) -> Settings:
    return mailing_settings(db, keys_dir, mailbox, tmp_path)


@pytest.fixture
def app_client(account_settings, clock) -> Iterator[TestClient]:
    """The app with its mail sender running, delivering to ``mailbox``, on the test's clock."""
    app = create_app(account_settings, clock=clock)
    with TestClient(app, base_url=account_settings.issuer) as client:
        yield client


@pytest.fixture
def live_mail_server(db, keys_dir, mailbox, tmp_path, clock) -> Iterator[LiveServer]:
    """The app on a free loopback port (``idp serve``'s server), delivering mail to ``mailbox``,
    on the test's clock."""
    with LiveServer(served_settings(db, keys_dir, mailbox, tmp_path), clock) as live:
        yield live


STRONG = "Fahrradklingel am Rathausplatz"


def register(client: TestClient, email_address: str, password: str = STRONG, **extra):
    return submit(
        client,
        "/register",
        "/register",
        {"email": email_address, "password": password, "privacy_consent": "yes", **extra},
        follow_redirects=False,
    )


def login(client: TestClient, email_address: str, password: str = STRONG, **extra):
    return submit(
        client,
        "/login",
        "/login",
        {"email": email_address, "password": password, **extra},
        follow_redirects=False,
    )
