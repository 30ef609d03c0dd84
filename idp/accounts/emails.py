"""Email addresses as login identifiers: checked and normalised once."""

from __future__ import annotations

import re

from idp.accounts.errors import InvalidEmail

# Pragmatic, not RFC 5322 in full: one @, a dot-atom on either side (no quoted local
# parts, comments or domain literals), a dotted domain. RFC 5322's specials
# ``()<>[]:;@\,."`` outside a dot-atom change how a mail system reads an address
# (``x;y@a.example`` went to ``x``), so none is accepted; nor are spaces or controls.
_CHAR = r"[^\s@\x00-\x1f\x7f()<>\[\]:;\\,\"]"
_ATOM = rf"(?:(?!\.){_CHAR})+"
_SHAPE = re.compile(
    rf"^(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_ATOM}\.)+(?:(?!\.){_CHAR}){{2,63}}$"
)
MAX_LENGTH = 254  # RFC 5321 path limit


def normalise_email(value: str) -> str:
    """The stored form (trimmed, lower case); raise InvalidEmail if it cannot be an address."""
    email = value.strip().lower()
    if not email:
        raise InvalidEmail("email.missing")
    if len(email) > MAX_LENGTH:
        raise InvalidEmail("email.too_long", max=MAX_LENGTH)
    if not _SHAPE.match(email):
        raise InvalidEmail("email.invalid")
    return email
