"""Where a page may send the browser next: same-origin relative paths only."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT = "/account"
MAX_LENGTH = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search


def safe_return_to(value: str | None, default: str = DEFAULT) -> str:
    """``value`` if it is a same-origin path ("/..."), else ``default`` (open-redirect safe).

    Refused: absolute URLs, scheme-relative "//host", backslashes (browsers read
    "/\\host" as "//host"), control characters and anything overlong.
    """
    if not value or len(value) > MAX_LENGTH or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value:
        return default
    if _CONTROL(value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
