"""How mail leaves: SMTP (STARTTLS, implicit TLS, or plain to a local relay), or,
without an SMTP host (development), ``.eml`` files in a folder plus a log line."""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from idp.settings import Settings

log = logging.getLogger("idp.mail")
TIMEOUT = 20  # for each answer of the SMTP server
# For a whole delivery: a relay that answers slowly but within TIMEOUT each time must
# still end inside the outbox's lease, or another sender would deliver the mail again.
DEADLINE = 40


class Transport(Protocol):
    def deliver(self, email: EmailMessage) -> None:
        """Hand the mail on; raise on failure (the outbox retries)."""


class _Deadline:
    """An SMTP session whose connection is shut down ``DEADLINE`` seconds after it began,
    whatever it waits for: a relay may answer slowly, or a line at a time, each within
    ``TIMEOUT``, for ever. ``expired`` is set when it was."""

    sock: Any

    def __init__(self, *args: Any, expired: threading.Event, **kwargs: Any) -> None:
        self._timer = threading.Timer(DEADLINE, self._cut, (expired,))
        self._timer.daemon = True
        self._timer.start()
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._timer.cancel()
            raise

    def _cut(self, expired: threading.Event) -> None:
        expired.set()
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        super().close()  # type: ignore[misc]


class _SMTP(_Deadline, smtplib.SMTP):
    pass


class _SMTP_SSL(_Deadline, smtplib.SMTP_SSL):
    pass


class SmtpTransport:
    """Deliver through an SMTP server with the configured security and login."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Certificate and host name are always verified; a private CA is trusted
        # through IDP_SMTP_CA_FILE, never by switching verification off.
        cafile = str(settings.smtp_ca_file) if settings.smtp_ca_file else None
        self.context = ssl.create_default_context(cafile=cafile)

    def deliver(self, email: EmailMessage) -> None:
        s = self.settings
        context = self.context
        expired = threading.Event()
        try:
            if s.smtp_security == "tls":
                client: smtplib.SMTP = _SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=TIMEOUT, context=context, expired=expired
                )
            else:
                client = _SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT, expired=expired)
            with client:
                if s.smtp_security == "starttls":
                    client.starttls(context=context)
                if s.smtp_user:
                    client.login(s.smtp_user, s.smtp_password)
                client.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            if expired.is_set():
                raise TimeoutError(f"delivery took longer than {DEADLINE} s") from exc
            raise


class FileTransport:
    """Development: write each mail to the mail folder and log where it went."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def deliver(self, email: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The machine's time, not the service's clock: it names files apart, in order.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}.eml"
        path.write_bytes(email.as_bytes())
        links = re.findall(r"https?://\S+", email.get_content())
        log.info(
            "mail to %s (%s) written to %s%s",
            email["To"],
            email["Subject"],
            path,
            "".join(f"\n  link: {link}" for link in links),
        )


def transport_for(settings: Settings) -> Transport:
    """SMTP when a host is configured, else the mail folder."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileTransport(settings.mail_dir)
