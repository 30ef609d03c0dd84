"""Every route the app registers, fuzzed: hostile input gets a 4xx, never a 5xx or a traceback.

Property-based (hypothesis): for each route of :data:`ROUTES` (a test fails when the app
registers a route this table lacks), requests are drawn that carry hostile values — NUL,
quotes, backslash, TAB, non-ASCII, very long strings, deeply nested JSON, JWT-looking
strings with bad Base64 or nested segments, bytes that are not UTF-8 — in the query, the
form body, the path parameter and the Authorization header, on top of a plausible request
(a registered client, a logged-in citizen, a CSRF token, live tokens) so that the values
reach the handlers' logic, not only the first check. The number of examples is bounded so
the file runs in well under 90 s on SQLite; run it on PostgreSQL too (NUL matters there).
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.oidc import factories

EXAMPLES = 20
FORM = "application/x-www-form-urlencoded"
AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "ui_locales",
    "login_hint",
    "id_token_hint",
    "acr_values",
    "claims",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
)
TOKEN_FIELDS = (
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
)


@dataclass(frozen=True)
class Route:
    """How a route is fuzzed: its methods, the parameters it reads, and its path's parameter."""

    methods: tuple[str, ...]
    fields: tuple[str, ...] = ()
    # The path with ``{}`` where the path parameter goes, for routes that have one.
    template: str | None = None
    program: bool = False  # authenticated by client credentials or a bearer token


PAGE = ("lang",)
ROUTES: dict[str, Route] = {
    "/.well-known/openid-configuration": Route(("GET",)),
    "/.well-known/oauth-authorization-server": Route(("GET",)),
    "/jwks.json": Route(("GET",)),
    "/healthz": Route(("GET",)),
    "/readyz": Route(("GET",)),
    "/metrics": Route(("GET",), program=True),
    "/": Route(("GET",), PAGE),
    "/privacy": Route(("GET",), PAGE),
    "/register": Route(
        ("GET", "POST"), ("email", "password", "privacy_consent", "return_to", "flow", *PAGE)
    ),
    "/verify-email": Route(("GET", "POST"), ("flow", "token", "code", *PAGE)),
    "/verify-email/resend": Route(("POST",), ("flow",)),
    "/login": Route(("GET", "POST"), ("email", "password", "return_to", "flow", "login_hint")),
    "/logout": Route(("GET", "POST"), PAGE),
    "/password/forgot": Route(("GET", "POST"), ("email", "login_hint")),
    "/password/reset": Route(("GET", "POST"), ("flow", "token", "password")),
    "/account": Route(("GET",), PAGE),
    "/account/verify-email": Route(("POST",), ()),
    "/account/security": Route(("GET",), ("done",)),
    "/account/security/totp": Route(("GET", "POST"), ("flow", "code", "label")),
    "/account/security/passkey": Route(("GET", "POST"), ("flow", "credential", "label")),
    "/account/security/recovery-codes": Route(("POST",), ()),
    "/account/security/factors/{factor_id:int}/remove": Route(
        ("POST",), (), "/account/security/factors/{}/remove"
    ),
    "/step-up": Route(("GET", "POST"), ("return_to", "acr", "method", "code", "credential")),
    "/account/confirm": Route(
        ("GET", "POST"), ("return_to", "method", "code", "credential", "password")
    ),
    "/token": Route(("POST",), TOKEN_FIELDS, program=True),
    "/userinfo": Route(("GET", "POST"), ("access_token", "claims"), program=True),
    "/introspect": Route(("POST",), ("token", "token_type_hint", *TOKEN_FIELDS), program=True),
    "/revoke": Route(("POST",), ("token", "token_type_hint", *TOKEN_FIELDS), program=True),
    "/authorize": Route(("GET", "POST"), AUTHORIZE_FIELDS),
    "/authorize/resume/{flow_id:str}": Route(("GET",), ("step_up",), "/authorize/resume/{}"),
    "/consent": Route(("GET", "POST"), ("flow", "decision")),
    "/end-session": Route(
        ("GET", "POST"),
        ("id_token_hint", "post_logout_redirect_uri", "client_id", "state", "ui_locales"),
    ),
    "/end-session/confirm": Route(
        ("POST",), ("client_id", "post_logout_redirect_uri", "state", "ui_locales")
    ),
    "/account/apps": Route(("GET",), PAGE),
    "/account/apps/withdraw": Route(("POST",), ("client_id",)),
    "/demo": Route(("GET",), PAGE),
    "/demo/login": Route(("GET",), ("acr", "prompt")),
    "/demo/callback": Route(("GET",), ("state", "code", "error", "iss")),
    "/demo/logout": Route(("GET",), ()),
    "/static/{file_path:path}": Route(("GET",), ("v",), "/static/{}"),
}


# -- hostile values ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Deep enough for a RecursionError in json even with the recursion limit hypothesis raises
# while it runs a test (about 2,000 frames more), yet within the size limits (a token's 8 KiB,
# a body's 64 KiB once URL-encoded).
NESTED = "[" * 5_000 + "]" * 5_000
NESTED_CLAIMS = '{"a":' * 2_500 + "{}" + "}" * 2_500
NESTED_JWT = f"{_b64(NESTED[:4_000].encode())}.e30.c2ln"
SAMPLES = [
    NESTED_JWT,
    "\x00",
    "a\x00b",
    '"',
    "'",
    "\\",
    "\t",
    "\r\n",
    "\x7f\x85",
    "ü",
    "€",
    "\u2028",
    "\U0001f600",
    "%00",
    "%ff",
    "../../../etc/passwd",
    "",
    " ",
    "a" * 5_000,
    "ä" * 2_000,
    NESTED,
    NESTED_CLAIMS,
    "null",
    "{}",
    '{"userinfo": {"email": {"essential": "yes"}}, "id_token": []}',
    "1e999",
    "-1",
    "99999999999999999999999",
    "=",
    "&",
    "+",
    "https://rp.example.de/callback\"'<>",
    "javascript:alert(1)",
    "//evil.example",
]
SEGMENTS = st.one_of(
    st.sampled_from(["", "!!!", "e30", "bnVsbA", "W10", "=", "a" * 3000]),
    st.binary(max_size=40).map(_b64),
    st.sampled_from([NESTED[:2000], '{"alg":' * 300, '{"alg":"none"}', '{"kid":[]}']).map(
        lambda text: _b64(text.encode())
    ),
)
JWT_LIKE = st.one_of(
    st.tuples(SEGMENTS, SEGMENTS, SEGMENTS), st.lists(SEGMENTS, min_size=1, max_size=5)
).map(".".join)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
HOSTILE = st.one_of(st.sampled_from(SAMPLES), TEXT, JWT_LIKE)
# Bytes a header can carry (no CR, LF or NUL: the server would refuse the request line).
HEADER_BYTES = st.binary(min_size=1, max_size=40).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"") or b"\xff"
)


# -- the world the requests are made in ----------------------------------------------------------


@dataclass
class World:
    """A registered client, a logged-in citizen with a CSRF token, and live tokens."""

    client: Any
    info: factories.ClientInfo
    csrf: str
    tokens: dict[str, str] = field(default_factory=dict)

    def baseline(self, path: str, method: str, kind: int) -> dict[str, str]:
        """Plausible parameters for ``path``, that a hostile value replaces or joins;
        ``kind`` picks one of the grants or tokens where there are several."""
        info = self.info
        if path in ("/authorize", "/demo/login"):
            return {
                "response_type": "code",
                "client_id": info.client_id,
                "redirect_uri": info.redirect_uri,
                "scope": "openid offline_access",
                "state": "st",
                "nonce": "n",
            }
        if path == "/token":
            return [
                {
                    "grant_type": "authorization_code",
                    "code": "x",
                    "redirect_uri": info.redirect_uri,
                },
                {"grant_type": "refresh_token", "refresh_token": self.tokens["refresh_token"]},
                {"grant_type": "client_credentials"},
            ][kind]
        if path in ("/introspect", "/revoke"):
            return {"token": self.tokens[("access_token", "refresh_token", "id_token")[kind]]}
        if path.startswith("/end-session"):
            return {
                "id_token_hint": self.tokens["id_token"],
                "client_id": info.client_id,
                "post_logout_redirect_uri": "https://rp.example.de/logged-out",
                "state": "st",
            }
        if method == "POST" and not ROUTES[path].program:
            return {"csrf_token": self.csrf}
        return {}

    def authorization(self, path: str) -> str | None:
        if path == "/userinfo":
            return f"Bearer {self.tokens['access_token']}"
        if ROUTES[path].program:
            raw = f"{self.info.client_id}:{self.info.client_secret}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None


@pytest.fixture
def world(client, db, settings) -> World:
    info = factories.client(db, first_party=True)
    client.cookies.set("idp_session", factories.login_token(db, factories.account(db), settings))
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    world = World(client, info, csrf)
    query = urlencode(world.baseline("/authorize", "GET", 0))
    location = client.get(f"/authorize?{query}", follow_redirects=False).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": info.redirect_uri}
    tokens = client.post("/token", data=data, auth=(info.client_id, info.client_secret)).json()
    world.tokens = {name: tokens[name] for name in ("access_token", "refresh_token", "id_token")}
    return world


# -- the requests --------------------------------------------------------------------------------


@dataclass
class Probe:
    method: str
    url: str
    headers: dict[str, Any]
    body: bytes | None


def _encode(pairs: list[tuple[str, str | bytes]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def _probe(
    path: str,
    method: str,
    pairs: list[tuple[str, str | bytes]],
    headers: dict[str, Any],
    segment: str = "idp.css",
) -> Probe:
    """The request: ``pairs`` as the query (GET) or the form (POST), ``segment`` in the path."""
    route = ROUTES[path]
    url = route.template.format(quote(segment, safe="") or "x") if route.template else path
    encoded = _encode(pairs)
    if method == "GET":
        return Probe(method, f"{url}?{encoded}" if encoded else url, headers, None)
    return Probe(method, url, {**headers, "content-type": FORM}, encoded.encode())


def _headers(world: World, path: str) -> dict[str, Any]:
    authorization = world.authorization(path)
    return {"authorization": authorization} if authorization else {}


@st.composite
def probes(draw: st.DrawFn, world: World, path: str) -> Probe:
    """One request to ``path`` with a hostile value somewhere."""
    route = ROUTES[path]
    method = draw(st.sampled_from(route.methods))
    pairs: list[tuple[str, str | bytes]] = list(
        world.baseline(path, method, draw(st.integers(0, 2))).items()
    )
    headers = _headers(world, path)
    place = draw(st.sampled_from(["parameter", "header"] + (["path"] if route.template else [])))
    if place == "parameter":
        names = [*route.fields, *(name for name, _ in pairs)]
        name = draw(st.one_of(st.sampled_from(names), TEXT)) if names else draw(TEXT)
        value: str | bytes = draw(st.one_of(HOSTILE, st.binary(max_size=20)))
        if draw(st.booleans()):  # in place of the plausible value, or beside it (repeated)
            pairs = [(k, v) for k, v in pairs if k != name]
        pairs.append((name, value))
    elif place == "header":
        headers["authorization"] = draw(
            st.one_of(
                HEADER_BYTES.map(lambda raw: b"Basic " + base64.b64encode(raw)),
                HEADER_BYTES.map(lambda raw: b"Basic " + raw),
                HOSTILE.map(lambda token: f"Bearer {token}".encode()),
                HEADER_BYTES.map(lambda raw: b"Bearer " + raw),
                HEADER_BYTES,
            )
        )
    return _probe(path, method, pairs, headers, draw(HOSTILE) if place == "path" else "idp.css")


# Tried on every route before the drawn requests: in every parameter at once, in the path,
# and as credentials. Each of these ended in a 500 somewhere once.
KNOWN: list[str | bytes] = [
    NESTED,
    "\x00",
    '"\\\t',
    "ü\u2028",
    "a" * 5_000,
    NESTED_CLAIMS,
    NESTED_JWT,
    b"\xff\xfe",
]
KNOWN_CREDENTIALS = [
    f"Bearer {NESTED_JWT}",
    "Bearer ",
    "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
    b"Basic \xff\xfe",
]


# A request of KNOWN values stays below this (URL length, body size limit): the
# parameters are split over as many requests as it takes.
KNOWN_REQUEST_SIZE = 30_000


def _groups(names: list[str], value: str | bytes) -> list[list[str]]:
    """``names`` in groups whose values together stay below :data:`KNOWN_REQUEST_SIZE`."""
    size = len(quote(value, safe="")) + 64
    per_request = max(1, KNOWN_REQUEST_SIZE // size)
    return [names[i : i + per_request] for i in range(0, len(names), per_request)]


def known_probes(world: World, path: str) -> list[Probe]:
    """The requests :data:`KNOWN` and :data:`KNOWN_CREDENTIALS` make for ``path``."""
    route = ROUTES[path]
    found = []
    for method in route.methods:
        baseline = world.baseline(path, method, 1)
        names = list(dict.fromkeys([*route.fields, *baseline]))
        for value in KNOWN:
            for group in _groups(names, value) if names else [[]]:
                pairs = [(k, v) for k, v in baseline.items() if k not in group]
                pairs += [(name, value) for name in group]
                found.append(_probe(path, method, pairs, _headers(world, path)))
    first = route.methods[0]
    baseline_pairs = list(world.baseline(path, first, 1).items())
    for credentials in KNOWN_CREDENTIALS:
        found.append(_probe(path, first, baseline_pairs, {"authorization": credentials}))
    if route.template:
        for value in KNOWN:
            if isinstance(value, str):
                found.append(_probe(path, first, baseline_pairs, _headers(world, path), value))
    return found


def _problems(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info]


def test_every_registered_route_is_fuzzed(client):
    registered = {route.path for route in client.app.routes}
    assert registered == set(ROUTES), "add the route to ROUTES in tests/web/test_fuzz.py"


@pytest.mark.parametrize("path", list(ROUTES))
def test_hostile_input_never_ends_in_a_server_error(world, caplog, path):
    caplog.set_level(logging.WARNING)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(probe=probes(world, path))
    def hostile_request_is_a_client_error(probe: Probe) -> None:
        seen = len(caplog.records)
        response = world.client.request(
            probe.method,
            probe.url,
            headers=probe.headers,
            content=probe.body,
            follow_redirects=False,
        )
        assert response.status_code < 500, (probe, response.status_code, response.text[:500])
        assert not _problems(caplog.records[seen:]), (probe, _problems(caplog.records[seen:]))

    for probe in known_probes(world, path):
        hostile_request_is_a_client_error = example(probe=probe)(hostile_request_is_a_client_error)
    hostile_request_is_a_client_error()
