"""Cookies whose Set-Cookie header is built once per set of attributes.

litestar builds each Set-Cookie header through ``http.cookies.SimpleCookie`` and a
deep copy of the cookie's fields: on the login page that was a tenth of the
request. The cookies set on every login (CSRF, session, language) have a few
fixed sets of attributes and values that need no quoting (URL-safe tokens), so
the header's attribute part is made once by litestar itself and the value put in
front of it; anything else (an empty or quoted value, an ``expires`` date, which
depends on the time) goes the usual way.
"""

from __future__ import annotations

import re
from functools import lru_cache

from litestar import Response
from litestar.datastructures import Cookie

# What SimpleCookie leaves unquoted, and what the service's cookie values are made of.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_\-]+")
_PLACEHOLDER = "v"


class PreparedCookie(Cookie):
    """A :class:`Cookie` whose header is its value followed by attributes made once."""

    def to_encoded_header(self) -> tuple[bytes, bytes]:
        if self.expires is not None or not _PLAIN_VALUE.fullmatch(self.value or ""):
            return super().to_encoded_header()
        prefix, suffix = _attributes(
            self.key,
            self.path,
            self.max_age,
            self.domain,
            self.secure,
            self.httponly,
            self.samesite,
        )
        return b"set-cookie", prefix + self.value.encode("ascii") + suffix  # type: ignore[union-attr]


@lru_cache(maxsize=64)
def _attributes(
    key: str,
    path: str,
    max_age: int | None,
    domain: str | None,
    secure: bool | None,
    httponly: bool | None,
    samesite: str,
) -> tuple[bytes, bytes]:
    """The header litestar makes for these attributes, split around the value."""
    _, header = Cookie(
        key=key,
        value=_PLACEHOLDER,
        path=path,
        max_age=max_age,
        domain=domain,
        secure=secure,
        httponly=httponly,
        samesite=samesite,  # type: ignore[arg-type]
    ).to_encoded_header()
    prefix = f"{key}=".encode("latin-1")
    assert header.startswith(prefix + _PLACEHOLDER.encode())
    return prefix, header[len(prefix) + len(_PLACEHOLDER) :]


def set_cookie(response: Response, key: str, value: str, **attributes: object) -> None:
    """``response.set_cookie`` with the header built as :class:`PreparedCookie` builds it."""
    response.set_cookie(PreparedCookie(key=key, value=value, **attributes))  # type: ignore[arg-type]
