"""How mail leaves: SMTP (STARTTLS, implicit TLS, or plain to a local relay), or,
without an SMTP host (development), ``.eml`` files in a folder plus a log line."""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from idp import clock
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
    """Every read and write of an SMTP session waits at most until its ``deadline``."""

    deadline: float
    sock: Any

    def _wait(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()  # type: ignore[attr-defined]
            raise smtplib.SMTPServerDisconnected(f"delivery took longer than {DEADLINE} s")
        if self.sock is not None:
            # A socket closed under the session (a failed TLS handshake): the read or
            # write itself then fails as smtplib expects.
            with contextlib.suppress(OSError):
                self.sock.settimeout(min(TIMEOUT, left))

    def send(self, s: Any) -> None:
        self._wait()
        super().send(s)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        self._wait()
        return super().getreply()  # type: ignore[misc]


class _SMTP(_Deadline, smtplib.SMTP):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)


class _SMTP_SSL(_Deadline, smtplib.SMTP_SSL):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)


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
        deadline = time.monotonic() + DEADLINE
        if s.smtp_security == "tls":
            client: smtplib.SMTP = _SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=TIMEOUT, context=context, deadline=deadline
            )
        else:
            client = _SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT, deadline=deadline)
        with client:
            if s.smtp_security == "starttls":
                client.starttls(context=context)
            if s.smtp_user:
                client.login(s.smtp_user, s.smtp_password)
            client.send_message(email)


class FileTransport:
    """Development: write each mail to the mail folder and log where it went."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def deliver(self, email: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = clock.now().strftime("%Y%m%dT%H%M%S%f")
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
