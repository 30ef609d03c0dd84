"""The outbox under faults: a slow relay, two senders, a database that refuses to record a
delivery, mails given up on. Delivered through a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import event, select

from idp.app import create_app
from idp.cli import main
from idp.clock import FrozenClock
from idp.db.engine import Database
from idp.db.models import MailMessage
from idp.mail.outbox import LEASE, enqueue, pending_count, send_pending
from idp.mail.transport import DEADLINE
from idp.settings import Settings
from tests.conftest import free_port, make_settings
from tests.test_metrics import TOKEN, counter


class SlowRelay:
    """An SMTP server that takes ``seconds`` (of the service's clock) to accept each mail:
    it waits ``real`` seconds and moves the clock on by ``seconds``, so a relay slower than
    the outbox's lease costs the test a fraction of a second per mail."""

    def __init__(self, clock: FrozenClock, seconds: float = 0, real: float = 0) -> None:
        self.clock = clock
        self.seconds = seconds
        self.real = real
        self.recipients: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.real)
        with self._lock:
            self.clock.advance(timedelta(seconds=self.seconds))
            self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def relay(clock) -> Iterator[SlowRelay]:
    relay = SlowRelay(clock)
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    relay.port = controller.port
    yield relay
    controller.stop()


def smtp_settings(db: Database, keys_dir, port: int, **overrides) -> Settings:
    return make_settings(
        db.url,
        keys_dir,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        **overrides,
    )


def queue(db: Database, settings: Settings, count: int) -> list[str]:
    """``count`` mails, to as many recipients; their addresses."""
    recipients = [f"buerger{i:02}@example.de" for i in range(count)]
    context = {"login_link": "l", "reset_link": "r"}
    with db.unit_of_work() as session:
        for to in recipients:
            enqueue(session, settings, to, "account_exists", "de", context)
    return recipients


def statuses(db: Database) -> Counter[str]:
    with db.unit_of_work() as session:
        return Counter(session.scalars(select(MailMessage.status)))


def test_two_senders_deliver_every_mail_exactly_once_through_a_relay_slower_than_the_lease(
    db, keys_dir, relay
):
    # 8 s a mail, 24 mails: 192 s of delivery, three times the lease. Claiming many under
    # one lease let the second sender claim again what the first had not sent yet.
    relay.seconds, relay.real = 8, 0.05
    settings = smtp_settings(db, keys_dir, relay.port)
    recipients = queue(db, settings, 24)
    errors: list[BaseException] = []

    def sender() -> None:
        own = Database(db.url, clock=db.clock)  # a worker of its own, with its own connections
        try:
            deadline = time.monotonic() + 60
            while pending_count(own) and time.monotonic() < deadline:
                send_pending(own, settings)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    assert Counter(relay.recipients) == Counter(recipients), "lost or delivered twice"
    assert statuses(db) == {"sent": 24}


@pytest.fixture
def refusing(db) -> Iterator:
    """Install a refusal of marking the first mail sent; removed after the test."""
    installed = []

    def install(times: int) -> list[int]:
        refused: list[int] = []
        error = db.engine.dialect.loaded_dbapi.OperationalError
        with db.unit_of_work() as session:
            first = session.scalar(select(MailMessage.id).order_by(MailMessage.id).limit(1))

        def before(conn, cursor, statement, parameters, context, executemany) -> None:
            bound = context.compiled_parameters[0] if context.compiled_parameters else {}
            marking = statement.lstrip().upper().startswith("UPDATE MAIL_OUTBOX") and (
                bound.get("status") == "sent" and bound.get("id_1") == first
            )
            if marking and len(refused) < times:
                refused.append(first)
                raise error("the database went away (injected)")

        event.listen(db.engine, "before_cursor_execute", before)
        installed.append(before)
        return refused

    yield install
    for before in installed:
        event.remove(db.engine, "before_cursor_execute", before)


def test_a_database_error_marking_one_mail_sent_neither_stops_the_round_nor_resends(
    db, keys_dir, relay, refusing, clock
):
    settings = smtp_settings(db, keys_dir, relay.port)
    recipients = queue(db, settings, 3)
    refused = refusing(times=1)

    assert send_pending(db, settings) == 3
    assert refused, "the fault was not injected"
    assert sorted(relay.recipients) == recipients
    assert statuses(db) == {"sent": 3}

    clock.advance(timedelta(minutes=5))  # every claim has run out: nothing is sent again
    assert send_pending(db, settings) == 0
    assert sorted(relay.recipients) == recipients


@pytest.mark.faults
def test_a_mail_that_cannot_be_marked_sent_for_its_whole_lease_does_not_hold_up_the_others(
    db, keys_dir, relay, refusing
):
    settings = smtp_settings(db, keys_dir, relay.port)
    recipients = queue(db, settings, 3)
    refusing(times=1000)

    assert send_pending(db, settings) == 3
    assert sorted(relay.recipients) == recipients  # each once, in the same round
    assert statuses(db) == {"sent": 2, "pending": 1}


def test_mails_given_up_on_are_counted_and_queued_again_by_retry_failed(
    db, keys_dir, relay, tmp_path, clock
):
    nowhere = smtp_settings(db, keys_dir, free_port(), mail_max_attempts=2)
    recipients = queue(db, nowhere, 2)
    assert send_pending(db, nowhere) == 0
    assert send_pending(db, nowhere, ignore_backoff=True) == 0
    assert statuses(db) == {"failed": 2}
    assert send_pending(db, nowhere, ignore_backoff=True) == 0  # given up: not tried again

    # The app's own sender makes its first round at start (nothing is due) and then waits.
    metrics_settings = make_settings(
        db.url, keys_dir, metrics_token=TOKEN, mail_poll_seconds=3600, mail_dir=tmp_path
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(
        create_app(metrics_settings, clock=clock), base_url=metrics_settings.issuer
    ) as client:
        text = client.get("/metrics", headers=auth).text
        assert counter(text, 'idp_mail_outbox_messages{status="failed"}') == 2

        env = {"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)}
        # In this process, on the test's clock: the mails are queued again as due now.
        result = CliRunner().invoke(main, ["mail", "retry-failed", "--json"], env=env, obj=clock)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == {"requeued": 2, "pending": 2}

        text = client.get("/metrics", headers=auth).text
        assert counter(text, 'idp_mail_outbox_messages{status="failed"}') == 0
        assert counter(text, 'idp_mail_outbox_messages{status="pending"}') == 2

    assert send_pending(db, smtp_settings(db, keys_dir, relay.port)) == 2
    assert sorted(relay.recipients) == recipients
    assert statuses(db) == {"sent": 2}


@pytest.mark.faults
def test_a_relay_that_answers_slowly_but_never_finishes_is_given_up_within_the_deadline(
    db, keys_dir
):
    # Each line comes within the 20 s timeout, the answer never ends: without a deadline
    # for the whole delivery it would outlast the lease, and another sender would send.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"220 slow relay\r\n")
            connection.recv(1024)  # EHLO
            while not stop.wait(2):
                try:
                    connection.sendall(b"250-still thinking\r\n")
                except OSError:
                    return

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    settings = smtp_settings(db, keys_dir, listener.getsockname()[1])
    queue(db, settings, 1)
    started = time.monotonic()
    try:
        assert send_pending(db, settings) == 0
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < LEASE.total_seconds() - 10
    with db.unit_of_work() as session:
        message = session.scalars(select(MailMessage)).one()
    assert message.status == "pending" and message.claimed_until is None
    assert f"longer than {DEADLINE} s" in message.last_error
