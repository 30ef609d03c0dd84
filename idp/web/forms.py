"""Reading HTML form posts strictly: one parser for the guard and the handlers.

Only ``application/x-www-form-urlencoded`` is accepted (what every form here
sends); the body size is capped by the application (413 beyond it). Invalid
UTF-8, NUL and other control characters, repeated or too many fields, and
overlong values are refused with a 4xx and a readable message, so no handler
ever sees them. The parsed form is cached on the request: the body is read once.
Handlers receive it with ``form: Form`` and ``dependencies=FORM``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from litestar import Request
from litestar.di import NamedDependency, Provide

from idp.web.errors import PageError

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32
MAX_VALUE = 4096  # no field of ours needs more; handlers check tighter limits
_STATE = "idp.form"
# C0 controls but tab, line feed and carriage return (a textarea's), DEL and C1 controls;
# one scan in C, not a Python step per character of every field.
_has_control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]").search


async def read_form(request: Request) -> dict[str, str]:
    """The posted form as a dict of strings; raise PageError on anything malformed."""
    state = request.scope.setdefault("state", {})
    if _STATE in state:
        return state[_STATE]
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise PageError(415, "error.415")
    body = await request.body()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise PageError(400, "error.encoding") from None
    except ValueError:
        raise PageError(400, "error.too_many_fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise PageError(400, "error.repeated_field")
        if len(value) > MAX_VALUE or len(name) > 64:
            raise PageError(400, "error.field_too_long")
        if _has_control(value) or _has_control(name):
            raise PageError(400, "error.control_characters")
        form[name] = value
    state[_STATE] = form
    return form


# Handlers declare ``form: Form`` and ``dependencies=FORM`` to receive the parsed post.
Form = NamedDependency[dict[str, str]]
FORM = {"form": Provide(read_form)}
