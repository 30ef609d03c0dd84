"""Languages of the pages: German first, English second.

The catalogs are JSON files in ``idp/web/i18n`` (one flat object of message
keys per language), loaded once. A page's language comes from, in order, the
``lang`` query parameter (the language switch), the ``idp_lang`` cookie the
switch sets, and the browser's Accept-Language; German is the default.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("de", "en")
DEFAULT = "de"
COOKIE = "idp_lang"
CATALOGS = Path(__file__).parent / "i18n"


@cache
def catalog(language: str) -> dict[str, str]:
    """The messages of one language."""
    return json.loads((CATALOGS / f"{language}.json").read_text(encoding="utf-8"))


def translate(language: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``language`` (German if missing), formatted with ``params``."""
    message = catalog(language).get(key) or catalog(DEFAULT).get(key)
    if message is None:
        raise KeyError(f"no message {key!r} in the catalogs")
    return message.format(**params) if params else message


def supported(value: str | None) -> str | None:
    """``value`` if it names a supported language (``de``, ``en-GB`` -> ``en``), else None."""
    if not value:
        return None
    primary = value.strip().split("-", 1)[0].split("_", 1)[0].lower()
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most, by q-value, or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        language = supported(tag)
        if language and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None


def negotiate(query_lang: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page language from the switch, the cookie, the browser, or the default."""
    return (
        supported(query_lang)
        or supported(cookie)
        or from_accept_language(accept_language)
        or DEFAULT
    )
