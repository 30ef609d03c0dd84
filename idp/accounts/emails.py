"""Email addresses as login identifiers: checked and normalised once."""

from __future__ import annotations

import re

from idp.accounts.errors import InvalidEmail

# Pragmatic, not RFC 5322 in full: one @, no spaces or controls, a dotted domain.
_CHAR = r"[^\s@\x00-\x1f\x7f]"
_SHAPE = re.compile(rf"^{_CHAR}{{1,64}}@{_CHAR}{{1,252}}\.[^\s@.\x00-\x1f\x7f]{{2,63}}$")
MAX_LENGTH = 254  # RFC 5321 path limit


def normalise_email(value: str) -> str:
    """The stored form (trimmed, lower case); raise InvalidEmail if it cannot be an address."""
    email = value.strip().lower()
    if not email:
        raise InvalidEmail("email.missing")
    if len(email) > MAX_LENGTH:
        raise InvalidEmail("email.too_long", max=MAX_LENGTH)
    if not _SHAPE.match(email) or ".." in email.split("@", 1)[1]:
        raise InvalidEmail("email.invalid")
    return email
