"""JSON from outside the service, parsed with a bound on its nesting.

Python's json parser recurses once per level of nesting: a few thousand ``[`` in a
``claims`` parameter or a token's header (a handful of kilobytes) end in a
RecursionError, deep in a request. JSON that others send us is parsed here: its
depth is measured first, without recursion, and anything deeper than any JSON we
accept is refused as a ValueError, as malformed JSON is.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any JSON we accept (a claims request is 4 levels, a JOSE header 1 or 2).
MAX_DEPTH = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class TooDeep(ValueError):
    """The JSON is nested deeper than allowed."""


def depth(text: str) -> int:
    """How deep ``text``'s arrays and objects nest (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    deepest = level = 0
    for bracket in brackets:
        if bracket in "[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input: ValueError if malformed or nested too deep."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)
