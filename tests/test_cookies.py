"""Set-Cookie headers built once per set of attributes say what litestar's would."""

from __future__ import annotations

import pytest
from litestar.datastructures import Cookie

from idp.web.cookies import PreparedCookie

CASES = [
    {"key": "idp_session", "value": "tok-EN_123", "path": "/", "httponly": True},
    {"key": "__Host-idp_session", "value": "a1", "path": "/", "secure": True, "httponly": True},
    {"key": "idp_lang", "value": "en", "path": "/", "max_age": 31536000, "samesite": "lax"},
    {"key": "idp_csrf", "value": "x", "path": "/", "secure": False, "samesite": "strict"},
    # Not plain tokens or with a time-dependent expiry: litestar's own way.
    {"key": "idp_session", "value": "", "path": "/", "max_age": 0, "httponly": True},
    {"key": "demo", "value": "a b;c", "path": "/demo"},
]


@pytest.mark.parametrize("attributes", CASES)
def test_a_prepared_cookie_header_is_litestars(attributes):
    assert (
        PreparedCookie(**attributes).to_encoded_header() == Cookie(**attributes).to_encoded_header()
    )


def test_two_values_with_the_same_attributes_each_get_their_own_header():
    first = PreparedCookie(key="k", value="one", path="/", httponly=True).to_encoded_header()
    second = PreparedCookie(key="k", value="two", path="/", httponly=True).to_encoded_header()
    assert first == (b"set-cookie", b"k=one; HttpOnly; Path=/; SameSite=lax")
    assert second == (b"set-cookie", b"k=two; HttpOnly; Path=/; SameSite=lax")
