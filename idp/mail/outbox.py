"""The mail outbox: enqueue in the caller's transaction, deliver later, never lose one.

A mail is a row written in the same transaction as the change that causes it
(an account registered, a reset asked for), so a crash either keeps both or
neither. Senders (the server's background task in each worker,
``idp mail send-pending``) deliver one mail at a time: each is claimed with a
compare-and-set on ``claimed_until`` (a lease) right before its delivery, and
marked sent on its own right after it. A delivery is bounded well inside the
lease (``idp.mail.transport.DEADLINE``), so no other sender can claim a mail
while one is still delivering it; the time left in the lease is spent retrying
the mark when the database refuses it. A mail goes out twice only when its
sender dies, or the database refuses to record the delivery for the whole lease,
between the delivery and the mark. A failed attempt backs off (5 s, 10 s, 20 s,
... at most an hour); after ``IDP_MAIL_MAX_ATTEMPTS`` the mail is marked failed
until ``idp mail retry-failed`` queues it again.

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
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp import clock
from idp.db import counters
from idp.db.engine import Database
from idp.db.models import MailMessage
from idp.mail.templates import compose
from idp.mail.transport import Transport, transport_for
from idp.settings import Settings

log = logging.getLogger("idp.mail")

LEASE = timedelta(seconds=60)  # a delivery ends within DEADLINE (40 s); the rest is to mark it
CANDIDATES = 10  # due mails looked at per claim (other senders may take the first ones)


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
    now = clock.now(session)
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


def _claim_next(db: Database, after: int, ignore_backoff: bool) -> MailMessage | None:
    """Lease the first due mail with an id above ``after``; None when there is none left.

    The lease is the compare-and-set: a mail is ours only if its ``claimed_until`` is
    still what we read (unclaimed, or a lease that ran out), and the new lease is
    later than any earlier one, so it also tells our claim from any other.
    """
    while True:
        now = clock.now(db)
        with db.unit_of_work() as session:
            query = select(MailMessage).where(
                MailMessage.id > after,
                MailMessage.status == "pending",
                or_(MailMessage.claimed_until.is_(None), MailMessage.claimed_until <= now),
            )
            if not ignore_backoff:
                query = query.where(MailMessage.next_attempt_at <= now)
            candidates = session.scalars(query.order_by(MailMessage.id).limit(CANDIDATES)).all()
        if not candidates:
            return None
        # Each claim a transaction of its own: a read that turns into a write within one
        # SQLite transaction fails outright if another sender wrote in between.
        for message in candidates:
            seen = message.claimed_until
            with db.unit_of_work() as session:
                result = session.execute(
                    update(MailMessage)
                    .where(
                        MailMessage.id == message.id,
                        MailMessage.status == "pending",
                        MailMessage.claimed_until.is_(None)
                        if seen is None
                        else MailMessage.claimed_until == seen,
                    )
                    .values(claimed_until=now + LEASE)
                )
            if result.rowcount == 1:
                message.claimed_until = now + LEASE  # the value we hold the lease by
                return message
        after = candidates[-1].id  # every one was taken by another sender meanwhile


def _mark_sent(db: Database, message: MailMessage) -> bool:
    """Record a delivered mail; False if another sender recorded it first."""
    with db.unit_of_work() as session:
        result = session.execute(
            update(MailMessage)
            .where(MailMessage.id == message.id, MailMessage.status == "pending")
            .values(
                status="sent",
                sent_at=clock.now(db),
                attempts=MailMessage.attempts + 1,
                claimed_until=None,
                context={},  # links and codes are secrets: gone once delivered
                last_error=None,
            )
        )
    return result.rowcount == 1


def _record_delivery(db: Database, message: MailMessage, until: float) -> None:
    """Mark ``message`` sent, retrying a database that refuses until ``until`` (monotonic)."""
    wait = 0.25
    while True:
        try:
            if not _mark_sent(db, message):
                log.warning("mail %s was delivered by another sender as well", message.id)
            return
        except SQLAlchemyError as exc:
            if time.monotonic() + wait > until:
                log.error(
                    "mail %s was delivered but cannot be marked sent; it will be sent "
                    "again when its claim runs out: %s",
                    message.id,
                    exc,
                )
                return
        time.sleep(wait)
        wait = min(wait * 2, 4)


def send_pending(
    db: Database, settings: Settings, transport: Transport | None = None, *, ignore_backoff=False
) -> int:
    """Deliver the due mails one at a time; return how many were sent. ``ignore_backoff``
    sends every pending one now (operators after fixing SMTP)."""
    transport = transport or transport_for(settings)
    sent = 0
    last = 0  # one pass in id order: a mail that fails now waits for the next round
    while (message := _claim_next(db, last, ignore_backoff)) is not None:
        last = message.id
        claimed = time.monotonic()
        try:
            email = compose(message, settings)
            transport.deliver(email)
        except Exception as exc:  # SMTP, network, a template error: retry, never crash
            _failed(db, settings, message, exc)
            continue
        _record_delivery(db, message, claimed + LEASE.total_seconds() - 5)
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
            .where(MailMessage.id == message.id, MailMessage.claimed_until == message.claimed_until)
            .values(
                status="failed" if gave_up else "pending",
                attempts=attempts,
                next_attempt_at=clock.now(db) + backoff(attempts),
                claimed_until=None,
                last_error=error,
            )
        )


def retry_failed(db: Database) -> int:
    """Queue every mail that was given up on again, with a fresh set of attempts; return
    how many."""
    with db.unit_of_work() as session:
        result = session.execute(
            update(MailMessage)
            .where(MailMessage.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=clock.now(db), claimed_until=None)
        )
    return result.rowcount


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
