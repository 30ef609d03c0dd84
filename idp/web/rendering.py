"""Server-rendered pages: one jinja environment, built once, and :func:`render`.

Templates live in ``idp/web/templates`` and extend ``base.html``. Every page
gets the translator ``t``, its language, the language switch link, this
browser's CSRF token and the URL of the stylesheet. Templates never query the
database: handlers pass what a page shows.

A page every visitor sees alike but for a few values (the login page: its CSRF token,
where to go next, the language link) can be rendered once and reused:
``render(..., slots=(...))`` names the context values that only ever appear as
plain text in the page. The page is rendered with an unguessable marker for each of
them, cut at the markers and kept (:class:`_Reusable`); each request joins the pieces
with its own values, escaped as jinja escapes them. The other values choose which
page is kept. tests/web/test_rendering.py holds every reused page to what a full
render gives.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.file_system import BaseLocalFileSystem
from litestar.types import PathType
from markupsafe import escape

from idp.web import csrf, i18n
from idp.web.cookies import set_cookie

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
LANG_COOKIE_SECONDS = 365 * 24 * 3600


class StaticFiles(BaseLocalFileSystem):
    """The static folder as litestar reads it, where a name no file can have is not found.

    litestar turns any error of ``stat`` but "not found" into a 500; a name longer
    than the system allows or with a NUL in it is just a file that is not there (404).
    """

    async def info(self, path: PathType, **kwargs: Any) -> Any:
        try:
            return await super().info(path, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(str(path)) from exc


@cache
def environment() -> Environment:
    """The jinja environment (autoescaping, strict about undefined names)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["static_url"] = static_url
    return env


@cache
def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so it can be cached long."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


def _query_lang(request: Request) -> str | None:
    try:
        return request.query_params.get("lang")
    except Exception:  # a malformed query string must not stop an error page
        return None


def language(request: Request) -> str:
    """The language of the page for this request."""
    return i18n.negotiate(
        _query_lang(request),
        request.cookies.get(i18n.COOKIE),
        request.headers.get("accept-language"),
    )


def _switch_url(request: Request, target: str) -> str:
    try:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    except Exception:
        params = []
    params.append(("lang", target))
    return f"{request.scope.get('path', '/')}?{urlencode(params)}"


@cache
def _translator(lang: str) -> Any:
    def t(key: str, **params: Any) -> str:
        return i18n.translate(lang, key, **params)

    return t


def _render_page(template: str, lang: str, path: str, context: dict[str, Any]) -> str:
    other = "en" if lang == "de" else "de"
    values = {
        "t": _translator(lang),
        "lang": lang,
        "other_lang": other,
        "csrf_field": csrf.FIELD,
        "path": path,
        **context,
    }
    return environment().get_template(template).render(values)


# The values every page has that differ from browser to browser, or with the query.
_PAGE_SLOTS = ("csrf_token", "switch_url")
# Marks a slot in a page rendered for reuse: letters and digits (escaping leaves them as
# they are), new and unguessable in every process.
_MARK = "slot" + secrets.token_hex(12)
_MARKED = re.compile(_MARK + r"(\d+)x")
# Pages kept per process, each a few kilobytes: one per template, language and set of the
# other values (for consent: the app and its scopes). Past the bound they start over.
REUSED_PAGES = 256


class _Reusable:
    """A page cut at its slots: literal text, then slot numbers and text in turn."""

    __slots__ = ("parts",)

    def __init__(self, html: str) -> None:
        pieces = _MARKED.split(html)
        self.parts = tuple(piece if n % 2 == 0 else int(piece) for n, piece in enumerate(pieces))

    def fill(self, values: tuple[str, ...]) -> str:
        escaped = [str(escape(value)) for value in values]
        return "".join(part if isinstance(part, str) else escaped[part] for part in self.parts)


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a context value (plain data only)."""
    if isinstance(value, dict):
        return tuple((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    hash(value)  # anything else must be hashable itself: a TypeError says which is not
    return value


_pages: dict[tuple[Any, ...], _Reusable] = {}


def _reusable(
    template: str, lang: str, path: str, context: dict[str, Any], slots: tuple[str, ...]
) -> _Reusable:
    """The page for these values, rendered with markers in its slots the first time."""
    fixed = {name: value for name, value in context.items() if name not in slots}
    key = (template, lang, path, slots, _frozen(fixed))
    page = _pages.get(key)
    if page is None:
        marked = {name: f"{_MARK}{n}x" for n, name in enumerate(slots)}
        page = _Reusable(_render_page(template, lang, path, {**fixed, **marked}))
        if len(_pages) >= REUSED_PAGES:
            _pages.clear()  # simpler than least-recently-used, and as rare
        _pages[key] = page
    return page


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    slots: Iterable[str] | None = None,
) -> Response:
    """Render ``template`` for this request as an HTML response.

    ``slots``: the context values that appear in the page only as text (escaped, never
    tested or filtered by the template); with them the page is rendered once per set
    of the other values and reused (see the module's docstring).
    """
    lang = language(request)
    other = "en" if lang == "de" else "de"
    path = request.scope.get("path", "/")
    per_request = {
        "csrf_token": csrf.form_token(request),
        "switch_url": _switch_url(request, other),
    }
    values = {**per_request, **(context or {})}
    if slots is None:
        html = _render_page(template, lang, path, values)
    else:
        names = (*_PAGE_SLOTS, *slots)
        page = _reusable(template, lang, path, values, names)
        html = page.fill(tuple(values[name] for name in names))
    response = Response(html, status_code=status, media_type="text/html", headers=headers)
    csrf.write_cookie(request, response)
    chosen = i18n.supported(_query_lang(request))
    if chosen and chosen != request.cookies.get(i18n.COOKIE):
        set_cookie(
            response,
            i18n.COOKIE,
            chosen,
            max_age=LANG_COOKIE_SECONDS,
            path="/",
            secure=request.app.state.services.settings.issuer.startswith("https://"),
            samesite="lax",
        )
    return response
