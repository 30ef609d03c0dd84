"""Registrations at a fixed rate over HTTP, as browsers without JavaScript would send them.

One registration = POST /register with a new address, a password and the privacy
consent, answered with a redirect (303) to the verification page. Each of a few
browsers (a cookie jar each) reads the form once (GET /register: its CSRF token
and cookie) and then submits it again and again, each time with a new address.

The rate is fixed (open loop): every 1/rate seconds a registration is due and
goes to a free browser; a registration due while every browser is still waiting
for an answer is counted as missed, not queued, so a slow server shows as
missed registrations and long latencies rather than as a lower rate.

Used by bench/contention.py and bench/soak.py; each registration costs the server
one argon2id hash, a write transaction and a mail (the outbox's own transactions).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import httpx

from login import parse_forms, percentile

FORM = "application/x-www-form-urlencoded"
# Seconds an idle connection is kept: less than the server's keep-alive (uvicorn: 5 s), or
# a request sent just as the server closes it fails (a read error, not the server's).
KEEPALIVE = 2.0


@dataclass
class Tally:
    """What a run of registrations did (latencies in seconds)."""

    done: int = 0
    errors: int = 0
    missed: int = 0
    latencies: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)

    def summary(self, seconds: float) -> dict:
        """Counts, rate and latency percentiles (ms) of the run."""
        lat = sorted(self.latencies)
        return {
            "registrations": self.done,
            "per_s": self.done / seconds if seconds else 0.0,
            "errors": self.errors,
            "missed": self.missed,
            "p50_ms": percentile(lat, 50) * 1000 if lat else None,
            "p99_ms": percentile(lat, 99) * 1000 if lat else None,
            "max_ms": lat[-1] * 1000 if lat else None,
            "first_errors": self.first_errors[:3],
        }


class Browser:
    """One cookie jar with the registration form's CSRF token."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.client = httpx.AsyncClient(
            follow_redirects=False, timeout=30.0, limits=httpx.Limits(keepalive_expiry=KEEPALIVE)
        )
        self.fields: list[tuple[str, str]] | None = None

    async def open_form(self) -> None:
        r = await self.client.get(self.issuer + "/register")
        r.raise_for_status()
        form = next(f for f in parse_forms(r.text) if (f.action or "").endswith("/register"))
        self.fields = [(n, v) for t, n, v in form.fields if t == "hidden" and n]

    async def register(self, email: str) -> None:
        if self.fields is None:
            await self.open_form()
        data = [
            *(self.fields or []),
            ("email", email),
            ("password", "soak " + secrets.token_urlsafe(12)),
            ("privacy_consent", "yes"),
        ]
        r = await self.client.post(
            self.issuer + "/register", data=dict(data), headers={"Content-Type": FORM}
        )
        if r.status_code != 303 or "/verify-email" not in r.headers.get("location", ""):
            raise RuntimeError(f"POST /register -> {r.status_code}: {r.text[:200]}")

    async def close(self) -> None:
        await self.client.aclose()


class Registrations:
    """Registrations at ``rate`` per second from ``browsers`` browsers, new addresses each."""

    def __init__(self, issuer: str, rate: float, browsers: int = 4, prefix: str = "") -> None:
        self.issuer = issuer
        self.rate = rate
        self.browsers = browsers
        self.prefix = prefix or f"reg-{secrets.token_hex(3)}"
        self._n = 0

    def _email(self) -> str:
        self._n += 1
        return f"{self.prefix}-{self._n}@example.test"

    async def run(self, seconds: float, tally: Tally | None = None) -> Tally:
        """Register at the fixed rate for ``seconds``; the tally of what happened."""
        tally = tally or Tally()
        free: asyncio.Queue[Browser] = asyncio.Queue()
        browsers = [Browser(self.issuer) for _ in range(self.browsers)]
        for b in browsers:
            free.put_nowait(b)
        pending: set[asyncio.Task] = set()

        async def one(b: Browser) -> None:
            t0 = time.perf_counter()
            try:
                await b.register(self._email())
                tally.latencies.append(time.perf_counter() - t0)
                tally.done += 1
            except Exception as e:
                tally.errors += 1
                if len(tally.first_errors) < 5:
                    tally.first_errors.append(f"{type(e).__name__}: {e}")
                b.fields = None  # read the form again
            finally:
                free.put_nowait(b)

        start = time.perf_counter()
        due = start
        try:
            while due < start + seconds:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += 1 / self.rate
                if free.empty():
                    tally.missed += 1
                    continue
                task = asyncio.create_task(one(free.get_nowait()))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=30)
        finally:
            for b in browsers:
                await b.close()
        return tally
