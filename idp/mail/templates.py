"""Mail templates: ``templates/<name>.<lang>.txt``, plain text, first line ``Subject: ...``.

Plain text reads well in every mail client and screen reader and carries no
remote content; links are written out in full so citizens can check them.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from idp.db.models import MailMessage
from idp.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("de", "en")


@cache
def environment() -> Environment:
    """Jinja for plain text: no HTML escaping, strict about missing values."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=False,  # noqa: S701 - plain-text mail, never HTML
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, locale: str, context: dict) -> tuple[str, str]:
    """(subject, body) of ``template`` in ``locale`` (German if unsupported)."""
    language = locale if locale in LANGUAGES else "de"
    text = environment().get_template(f"{template}.{language}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"mail template {template}.{language} lacks its Subject line")
    return first.removeprefix("Subject: ").strip(), body.lstrip("\n")


def compose(message: MailMessage, settings: Settings) -> EmailMessage:
    """The RFC 5322 message for an outbox row."""
    subject, body = render(message.template, message.locale, message.context)
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.recipient
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(idstring=f"idp{message.id}")
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(body, cte="quoted-printable")
    return email
