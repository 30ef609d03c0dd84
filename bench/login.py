"""Full authorization-code login over HTTP, as a browser without JavaScript would do it.

One login = GET /authorize (PKCE S256, state, nonce) -> follow redirects to the
login page -> POST its form with email and password -> follow redirects to the
consent page -> POST its form (the "allow" button) -> redirect to the client's
redirect_uri with ?code= -> POST /token (authorization_code, client_secret_basic).
Every login starts from an empty cookie jar (a new browser), so it always goes
through the password check and the consent step.

Forms are read from the HTML (stdlib html.parser), not hard-coded: hidden fields
(CSRF tokens) are sent back, the login form is the one with a password field,
the consent form's "allow"-like submit button is chosen. So the same driver runs
against the anchor (node-oidc-provider with bench/anchor/server.js) and idp.

A *password login* (``run_password_logins``) is only what a citizen does to log
in: GET the login page, POST its form with email and password, answered with a
redirect (a wrong password shows the form again and counts as an error). Where
the service has a login page of its own (idp: ``/login``), every login starts
there with an empty cookie jar. Where the login form exists only inside an
authorization request (node-oidc-provider's interactions), the requests that
open it (GET /authorize and its redirects) are made beforehand, outside the
timed run, and each timed login gets one such opened form with its cookies.

Also usable alone:  python bench/login.py --issuer URL --client-id ... --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

ALLOW_WORDS = re.compile(
    r"allow|accept|approve|confirm|consent|yes|grant|erlauben|zustimm|bestätig|akzept", re.I
)
DENY_WORDS = re.compile(r"deny|reject|cancel|abort|no\b|ablehnen|abbrechen", re.I)
EMAIL_NAMES = ("email", "username", "login", "user")


@dataclass
class Form:
    action: str | None
    method: str
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (type, name, value)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, text)

    @property
    def has_password(self) -> bool:
        return any(t == "password" for t, _, _ in self.fields)


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._button: list | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action"), (a.get("method") or "get").lower())
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input":
            t = (a.get("type") or "text").lower()
            if t in ("submit", "image"):
                self._form.buttons.append(
                    (a.get("name", ""), a.get("value", ""), a.get("value", ""))
                )
            elif t in ("checkbox", "radio"):
                if "checked" in a:
                    self._form.fields.append((t, a.get("name", ""), a.get("value", "on")))
            else:
                self._form.fields.append((t, a.get("name", ""), a.get("value", "")))
        elif tag == "button":
            t = (a.get("type") or "submit").lower()
            if t == "submit":
                self._button = [a.get("name", ""), a.get("value", ""), ""]

    def handle_data(self, data):
        if self._button is not None:
            self._button[2] += data

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None and self._form is not None:
            self._form.buttons.append(tuple(self._button))
            self._button = None
        elif tag == "form":
            self._form = None


def parse_forms(html: str) -> list[Form]:
    p = FormParser()
    p.feed(html)
    return [f for f in p.forms if f.method == "post"]


class LoginError(RuntimeError):
    pass


@dataclass
class Target:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    email: str
    password: str
    scope: str = "openid email profile offline_access"
    # Seeded accounts (idp bench seed): each login picks one of them at random, so the
    # lookups spread over the whole table; None: every login uses `email`.
    email_pattern: str | None = None
    accounts: int = 0
    prompt: str | None = "consent"  # offline_access needs prompt=consent (OIDC Core 11)
    # The service's own login page (idp: /login?return_to=...); None: the login form is
    # reached through /authorize (an interaction), opened before the timed run.
    login_page: str | None = None
    authorization_endpoint: str = ""
    token_endpoint: str = ""

    async def discover(self, client: httpx.AsyncClient) -> None:
        r = await client.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        r.raise_for_status()
        meta = r.json()
        self.authorization_endpoint = meta["authorization_endpoint"]
        self.token_endpoint = meta["token_endpoint"]

    def pick_email(self) -> str:
        if self.email_pattern and self.accounts:
            return self.email_pattern.format(n=random.randrange(self.accounts))
        return self.email

    @property
    def basic(self) -> str:
        from urllib.parse import quote

        raw = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return "Basic " + base64.b64encode(raw.encode()).decode()


def _pick_form(forms: list[Form], password_stage: bool) -> Form | None:
    if password_stage:
        return next((f for f in forms if f.has_password), None)
    for f in forms:
        if any(ALLOW_WORDS.search(f"{n} {v} {t}") for n, v, t in f.buttons):
            return f
    for f in forms:
        if f.action and ALLOW_WORDS.search(f.action) and not DENY_WORDS.search(f.action):
            return f
    return forms[0] if len(forms) == 1 else None


def _fill(form: Form, email: str, password: str) -> list[tuple[str, str]]:
    data: list[tuple[str, str]] = []
    for t, name, value in form.fields:
        if not name:
            continue
        if t == "password":
            value = password
        elif t == "email" or name.lower() in EMAIL_NAMES:
            value = email
        data.append((name, value))
    if form.buttons:
        allow = [b for b in form.buttons if ALLOW_WORDS.search(f"{b[0]} {b[1]} {b[2]}")]
        allow = [b for b in allow if not DENY_WORDS.search(f"{b[0]} {b[1]} {b[2]}")] or allow
        name, value, _ = (allow or form.buttons)[0]
        if name:
            data.append((name, value))
    return data


async def login(client: httpx.AsyncClient, target: Target, max_steps: int = 20) -> dict:
    """Run one full login with the given (fresh) client; return the token response."""
    params, verifier = _authorize_params(target)
    state = params["state"]
    email = target.pick_email()
    r = await client.get(target.authorization_endpoint, params=params)
    code = None
    password_sent = False
    for _ in range(max_steps):
        if r.is_redirect:
            location = urljoin(str(r.url), r.headers["location"])
            if location.startswith(target.redirect_uri):
                q = parse_qs(urlsplit(location).query)
                if "error" in q:
                    raise LoginError(f"authorization error: {q}")
                if q.get("state", [None])[0] != state:
                    raise LoginError("state mismatch")
                code = q["code"][0]
                break
            r = await client.get(location)
            continue
        if r.status_code != 200:
            raise LoginError(f"{r.request.method} {r.url} -> {r.status_code}: {r.text[:300]}")
        forms = parse_forms(r.text)
        login_form = _pick_form(forms, password_stage=True)
        if login_form is not None:
            if password_sent:
                raise LoginError(f"login form shown again after the password was sent: {r.url}")
            form = login_form
            password_sent = True
        else:
            form = _pick_form(forms, password_stage=False)
            if form is None:
                raise LoginError(f"no usable form at {r.url}: {r.text[:300]}")
        action = urljoin(str(r.url), form.action or str(r.url))
        r = await client.post(
            action,
            content=urlencode(_fill(form, email, target.password)).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    if code is None:
        raise LoginError("no code after max steps")
    r = await client.post(
        target.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": target.redirect_uri,
            "code_verifier": verifier,
        },
        headers={"Authorization": target.basic},
    )
    if r.status_code != 200:
        raise LoginError(f"token exchange -> {r.status_code}: {r.text[:300]}")
    tokens = r.json()
    if "access_token" not in tokens:
        raise LoginError(f"no access_token: {tokens}")
    return tokens


def _authorize_params(target: Target) -> tuple[dict[str, str], str]:
    """An authorization request's parameters (PKCE S256, state, nonce) and its code verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": target.client_id,
        "redirect_uri": target.redirect_uri,
        "scope": target.scope,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if target.prompt:
        params["prompt"] = target.prompt
    return params, verifier


@dataclass
class LoginStart:
    """Where one password login begins: the login page's URL and the browser's cookies."""

    url: str
    cookies: httpx.Cookies | None = None


async def open_login_form(
    client: httpx.AsyncClient, target: Target, max_steps: int = 10
) -> LoginStart:
    """GET /authorize and follow its redirects to the page with the password form."""
    r = await client.get(target.authorization_endpoint, params=_authorize_params(target)[0])
    for _ in range(max_steps):
        if r.is_redirect:
            r = await client.get(urljoin(str(r.url), r.headers["location"]))
            continue
        if r.status_code == 200 and _pick_form(parse_forms(r.text), password_stage=True):
            return LoginStart(str(r.url), httpx.Cookies(client.cookies))
        raise LoginError(f"no login form at {r.url}: {r.status_code} {r.text[:200]}")
    raise LoginError("no login form after max steps")


async def open_login_forms(target: Target, n: int, concurrency: int = 4) -> list[LoginStart]:
    """``n`` login forms opened through /authorize, each with its own cookies."""
    out: list[LoginStart] = []

    async def worker(k: int) -> None:
        async with new_client() as c:
            for _ in range(k):
                c.cookies.clear()
                out.append(await open_login_form(c, target))

    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(worker(k) for k in per if k))
    return out


async def password_login(client: httpx.AsyncClient, target: Target, start: LoginStart) -> None:
    """One password login: GET the login page, POST email and password, expect a redirect."""
    if start.cookies:
        client.cookies.update(start.cookies)
    r = await client.get(start.url)
    if r.status_code != 200:
        raise LoginError(f"GET {r.url} -> {r.status_code}: {r.text[:300]}")
    form = _pick_form(parse_forms(r.text), password_stage=True)
    if form is None:
        raise LoginError(f"no login form at {r.url}")
    r = await client.post(
        urljoin(str(r.url), form.action or str(r.url)),
        content=urlencode(_fill(form, target.pick_email(), target.password)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if not r.is_redirect:
        raise LoginError(f"POST {r.url} -> {r.status_code} (no redirect): {r.text[:300]}")


def new_client(limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=30.0,
        limits=limits or httpx.Limits(max_connections=4, max_keepalive_connections=4),
    )


async def mint(target: Target, n: int, concurrency: int = 4) -> list[dict]:
    """n independent logins; returns their token responses (for refresh-token pools)."""
    out: list[dict] = []
    async with new_client() as c:
        await target.discover(c)

    async def worker(k: int):
        async with new_client() as c:
            for _ in range(k):
                c.cookies.clear()
                out.append(await login(c, target))

    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(worker(k) for k in per if k))
    return out


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def run_logins(
    target: Target,
    seconds: float,
    concurrency: int,
    *,
    password_only: bool = False,
    starts: list[LoginStart] | None = None,
) -> dict:
    """Closed loop: `concurrency` virtual users log in back to back for `seconds`.

    A full authorization-code login each (``login``), or with ``password_only`` a
    password login each (``password_login``): from ``target.login_page`` with an
    empty cookie jar, or else from one of ``starts`` (forms opened beforehand with
    ``open_login_forms``; each is used once, and a run that uses them all up stops
    early and says so).

    Returns logins/s, latency percentiles (ms), errors, and the driver's own CPU
    use (to show whether the driver, not the server, is the limit)."""
    async with new_client() as c:
        await target.discover(c)
    pending = list(starts or [])
    ran_out = False
    latencies: list[float] = []
    errors: list[str] = []
    requests = 0
    deadline = time.perf_counter() + seconds

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request):
            nonlocal requests
            requests += 1
            return await super().handle_async_request(request)

    async def user():
        nonlocal ran_out
        # one connection pool per virtual user (a browser keeps its connection),
        # an empty cookie jar per login (a new browser session each time)
        async with httpx.AsyncClient(
            follow_redirects=False, timeout=30.0, transport=Counting()
        ) as c:
            while time.perf_counter() < deadline:
                c.cookies.clear()
                start = None
                if password_only:
                    if target.login_page:
                        start = LoginStart(target.login_page)
                    elif pending:
                        start = pending.pop()
                    else:
                        ran_out = True
                        break
                t0 = time.perf_counter()
                try:
                    if start is None:
                        await login(c, target)
                    else:
                        await password_login(c, target, start)
                except Exception as e:  # counted, reported, never hidden
                    errors.append(f"{type(e).__name__}: {e}"[:300])
                    continue
                latencies.append(time.perf_counter() - t0)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    latencies.sort()
    return {
        "logins": len(latencies),
        "seconds": wall,
        "logins_per_s": len(latencies) / wall,
        "http_requests": requests,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": len(errors),
        "first_errors": errors[:3],
        "driver_cpu_s": cpu,
        "driver_cpu_share": cpu / wall,  # of one core
        "ran_out_of_forms": ran_out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--redirect-uri", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--once", action="store_true", help="one login, print the token response")
    ap.add_argument(
        "--password-only",
        metavar="LOGIN_PAGE",
        nargs="?",
        const="",
        help="password logins only: from LOGIN_PAGE (a URL), or through /authorize without it",
    )
    a = ap.parse_args()
    t = Target(a.issuer, a.client_id, a.client_secret, a.redirect_uri, a.email, a.password)
    if a.password_only is not None:
        t.login_page = a.password_only or None

        async def password_run() -> dict:
            starts = None
            if not t.login_page:
                async with new_client() as c:
                    await t.discover(c)
                starts = await open_login_forms(t, int(a.seconds * 150), a.concurrency)
            return await run_logins(t, a.seconds, a.concurrency, password_only=True, starts=starts)

        print(json.dumps(asyncio.run(password_run()), indent=2))
    elif a.once:
        print(json.dumps(asyncio.run(mint(t, 1))[0], indent=2))
    else:
        print(json.dumps(asyncio.run(run_logins(t, a.seconds, a.concurrency)), indent=2))


if __name__ == "__main__":
    main()
