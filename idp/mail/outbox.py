"""The mail outbox: enqueue in the caller's transaction, deliver later, never lose one.

A mail is a row written in the same transaction as the change that causes it
(an account registered, a reset asked for), so a crash either keeps both or
neither. Senders (the server's background task, ``idp mail send-pending``)
claim due rows with a compare-and-set on ``claimed_until``, deliver outside any
transaction, then mark them sent; a failed attempt backs off (5 s, 10 s, 20 s,
... at most an hour) until ``IDP_MAIL_MAX_ATTEMPTS``. A sender that dies while
delivering leaves a claim that expires after a minute, so the mail is retried
(at least once).

Each template reaches one address at most once per cool-down
(``IDP_EMAIL_RESEND_SECONDS``): a later mail of the same template to the same
address within it is not queued, so a form sent twenty times does not flood a
mailbox. The window starts at a mail that was queued, never at a refused one, so
a security notice still goes out at least once per window however often it is
triggered. Concurrent requests take the window by compare-and-set
(:mod:`idp.db.counters`): only one of them queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from idp import clock
from idp.db import counters
from idp.db.engine import Database
from idp.db.models import MailMessage
from idp.mail.templates import compose
from idp.mail.transport import Transport, transport_for
from idp.settings import Settings

log = logging.getLogger("idp.mail")

CLAIM = timedelta(seconds=60)  # longer than a delivery may take (SMTP timeout 20 s)
BATCH = 50


def enqueue(
    session: Session,
    settings: Settings,
    to: str,
    template: str,
    locale: str,
    context: dict[str, Any],
    *,
    deliver: bool = True,
) -> MailMessage | None:
    """Queue a mail in the caller's transaction (sent after the commit); None, and nothing
    queued, while the cool-down of ``template`` for ``to`` runs.

    ``deliver=False`` writes the row as ``withheld``, never sent, after the same steps: for
    answers that must cost the same whether or not anyone gets mail (a reset asked for an
    unknown address).
    """
    if not counters.take(
        session,
        cool_down_key(to, template),
        limit=1,
        window=timedelta(seconds=settings.email_resend_seconds),
    ):
        return None
    now = clock.now()
    message = MailMessage(
        created_at=now,
        recipient=to,
        template=template,
        locale=locale,
        context=context if deliver else {},
        status="pending" if deliver else "withheld",
        attempts=0,
        next_attempt_at=now,
    )
    session.add(message)
    session.flush()
    return message


def cool_down_key(to: str, template: str) -> str:
    """The counter of mails of ``template`` to ``to`` (no address in clear)."""
    return "mail:" + hashlib.sha256(f"{template}\0{to.lower()}".encode()).hexdigest()


def cool_down_left(session: Session, to: str, template: str) -> int:
    """Seconds until a mail of ``template`` may go to ``to`` again (0: now)."""
    return counters.wait(session, cool_down_key(to, template))


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: 5 s doubling, at most an hour."""
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 3600))


def _claim(db: Database, ignore_backoff: bool) -> list[MailMessage]:
    now = clock.now()
    with db.unit_of_work() as session:
        query = select(MailMessage).where(
            MailMessage.status == "pending",
            or_(MailMessage.claimed_until.is_(None), MailMessage.claimed_until <= now),
        )
        if not ignore_backoff:
            query = query.where(MailMessage.next_attempt_at <= now)
        candidates = session.scalars(query.order_by(MailMessage.id).limit(BATCH)).all()
        seen = {m.id: m.claimed_until for m in candidates}
    claimed = []
    for message in candidates:
        with db.unit_of_work() as session:
            condition = (
                MailMessage.claimed_until.is_(None)
                if seen[message.id] is None
                else MailMessage.claimed_until == seen[message.id]
            )
            result = session.execute(
                update(MailMessage)
                .where(MailMessage.id == message.id, MailMessage.status == "pending", condition)
                .values(claimed_until=now + CLAIM)
            )
            if result.rowcount == 1:
                claimed.append(message)
    return claimed


def send_pending(
    db: Database, settings: Settings, transport: Transport | None = None, *, ignore_backoff=False
) -> int:
    """Deliver the due mails; return how many were sent. ``ignore_backoff`` sends every
    pending one now (operators after fixing SMTP)."""
    transport = transport or transport_for(settings)
    sent = 0
    for message in _claim(db, ignore_backoff):
        try:
            email = compose(message, settings)
            transport.deliver(email)
        except Exception as exc:  # SMTP, network, a template error: retry, never crash
            _failed(db, settings, message, exc)
            continue
        with db.unit_of_work() as session:
            session.execute(
                update(MailMessage)
                .where(MailMessage.id == message.id)
                .values(
                    status="sent",
                    sent_at=clock.now(),
                    attempts=MailMessage.attempts + 1,
                    claimed_until=None,
                    context={},  # links and codes are secrets: gone once delivered
                    last_error=None,
                )
            )
        sent += 1
    return sent


def _failed(db: Database, settings: Settings, message: MailMessage, exc: Exception) -> None:
    attempts = message.attempts + 1
    gave_up = attempts >= settings.mail_max_attempts
    error = f"{exc.__class__.__name__}: {exc}"[:1000]
    log.warning(
        "mail %s to %s failed (attempt %d%s): %s",
        message.id,
        message.recipient,
        attempts,
        ", giving up" if gave_up else "",
        error,
    )
    with db.unit_of_work() as session:
        session.execute(
            update(MailMessage)
            .where(MailMessage.id == message.id)
            .values(
                status="failed" if gave_up else "pending",
                attempts=attempts,
                next_attempt_at=clock.now() + backoff(attempts),
                claimed_until=None,
                last_error=error,
            )
        )


def pending_count(db: Database) -> int:
    """How many mails wait for delivery."""
    with db.unit_of_work() as session:
        return session.scalar(
            select(func.count()).select_from(MailMessage).where(MailMessage.status == "pending")
        )


class MailSender:
    """The server's background sender: wakes every poll interval or when nudged."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.transport = transport_for(settings)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def nudge(self, delay: float = 0) -> None:
        """Ask for a delivery round now, or in ``delay`` seconds (a request just queued a
        mail); thread-safe."""
        if self._loop is not None and self._wake is not None:
            if delay:
                self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._wake.set)
            else:
                self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Deliver until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.to_thread(send_pending, self.db, self.settings, self.transport)
            except Exception:
                log.exception("mail delivery round failed; trying again later")
            # Not asyncio.wait_for: on Python 3.11 it returns the event's result when a nudge
            # and the shutdown's cancel arrive in the same loop turn, the cancel is lost and
            # the shutdown waits for this loop forever. asyncio.timeout lets the cancel through.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.mail_poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
