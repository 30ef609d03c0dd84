"""Server-rendered pages: one jinja environment, built once, and :func:`render`.

Templates live in ``idp/web/templates`` and extend ``base.html``. Every page
gets the translator ``t``, its language, the language switch link, this
browser's CSRF token and the URL of the stylesheet. Templates never query the
database: handlers pass what a page shows.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response

from idp.web import csrf, i18n
from idp.web.cookies import set_cookie

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
LANG_COOKIE_SECONDS = 365 * 24 * 3600


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


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render ``template`` for this request as an HTML response."""
    lang = language(request)
    other = "en" if lang == "de" else "de"

    def t(key: str, **params: Any) -> str:
        return i18n.translate(lang, key, **params)

    values = {
        "t": t,
        "lang": lang,
        "other_lang": other,
        "switch_url": _switch_url(request, other),
        "csrf_field": csrf.FIELD,
        "csrf_token": csrf.form_token(request),
        "path": request.scope.get("path", "/"),
    }
    values.update(context or {})
    html = environment().get_template(template).render(values)
    response = Response(html, status_code=status, media_type="text/html", headers=headers)
    new_cookie = csrf.cookie_to_set(request)
    if new_cookie is not None:
        name, value, secure = new_cookie
        set_cookie(response, name, value, path="/", secure=secure, httponly=True, samesite="lax")
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
