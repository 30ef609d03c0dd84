"""Soak: `idp serve` under a steady, modest mixed load for a long time; does its memory level off?

  python bench/soak.py                          # SQLite, 2 workers, 30 minutes
  python bench/soak.py --minutes 5 --database postgresql   # needs IDP_BENCH_DATABASE_URL

One server (a fresh database: `idp db upgrade`, `idp keys ensure`, `idp bench seed`,
as bench/run.py prepares it) gets requests at fixed rates, not as fast as it can
answer, so the machine stays usable beside it:

- refresh-token rotations (a pool of rotation chains, each minted by a full login;
  every response's new refresh token goes back into the pool), default 100/s;
- client_credentials grants and UserInfo calls (with the latest access token of a
  rotation), 20/s each;
- full authorization-code logins (authorize, password, consent, code exchange: their
  refresh tokens join the pool, whose oldest chains are let go past 64), 0.5/s;
- registrations of new addresses (bench/register.py), 1.5/s.

Every ``--sample`` seconds (30) the VmRSS of every process of the server (the
supervising main process and each worker), with its parts (RssAnon, RssFile,
RssShmem), is read from /proc/PID/status; a process that ended meanwhile is left
out of that sample (a replaced worker shows as a new pid). The series, the request counts and errors per kind, and a summary (each
worker's RSS after the warm-up and at the end, its growth per minute in each third
of the run) are printed and written to bench/out/soak-*/soak.json.

A request due while its kind's previous ones are all still waiting for answers is
counted as missed, not queued (``--concurrency`` at once per kind).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import login as login_driver  # noqa: E402
import run as bench  # noqa: E402
from register import KEEPALIVE, Registrations, Tally  # noqa: E402

POOL = 64  # rotation chains kept; older ones are let go


@dataclass
class Kind:
    """Counts of one kind of request."""

    done: int = 0
    errors: int = 0
    missed: int = 0
    first_errors: list[str] = field(default_factory=list)

    def failed(self, why: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(why[:300])


class Load:
    """The soak's requests at fixed rates against one server."""

    def __init__(self, server: bench.Server, o: argparse.Namespace) -> None:
        self.server = server
        self.o = o
        self.kinds: dict[str, Kind] = collections.defaultdict(Kind)
        self.chains: collections.deque[str] = collections.deque()
        self.access_token: str | None = None
        self.registrations = Tally()
        self.target = server.target()
        self.token_url = ""
        self.userinfo_url = ""

    async def prepare(self) -> None:
        meta = httpx.get(self.server.issuer + "/.well-known/openid-configuration").json()
        self.token_url = meta["token_endpoint"]
        self.userinfo_url = meta["userinfo_endpoint"]
        for tokens in await login_driver.mint(self.target, 16, concurrency=4):
            self.chains.append(tokens["refresh_token"])
            self.access_token = tokens["access_token"]

    async def fixed_rate(self, name: str, rate: float, until: float, one) -> None:
        """Call ``one(client)`` ``rate`` times a second until ``until`` (monotonic)."""
        if rate <= 0:
            return
        kind = self.kinds[name]
        slots = asyncio.Semaphore(self.o.concurrency)
        pending: set[asyncio.Task] = set()
        limits = httpx.Limits(max_connections=self.o.concurrency, keepalive_expiry=KEEPALIVE)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

            async def run() -> None:
                try:
                    await one(client)
                    kind.done += 1
                except Exception as e:
                    kind.failed(f"{type(e).__name__}: {e}")
                finally:
                    slots.release()

            due = time.monotonic()
            while due < until:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += 1 / rate
                if slots.locked():
                    kind.missed += 1
                    continue
                await slots.acquire()
                task = asyncio.create_task(run())
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=30)

    async def refresh(self, client: httpx.AsyncClient) -> None:
        if not self.chains:
            raise RuntimeError("no refresh token left in the pool")
        token = self.chains.popleft()
        r = await client.post(
            self.token_url,
            content="grant_type=refresh_token&refresh_token=" + quote(token, safe=""),
            headers={"Authorization": self.server.auth, "Content-Type": bench.FORM},
        )
        if r.status_code != 200:
            raise RuntimeError(f"refresh -> {r.status_code}: {r.text[:200]}")
        body = r.json()
        self.chains.append(body["refresh_token"])
        self.access_token = body["access_token"]

    async def client_credentials(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            self.token_url,
            content="grant_type=client_credentials",
            headers={"Authorization": self.server.auth, "Content-Type": bench.FORM},
        )
        if r.status_code != 200:
            raise RuntimeError(f"client_credentials -> {r.status_code}: {r.text[:200]}")

    async def userinfo(self, client: httpx.AsyncClient) -> None:
        r = await client.get(
            self.userinfo_url, headers={"Authorization": f"Bearer {self.access_token}"}
        )
        if r.status_code != 200:
            raise RuntimeError(f"userinfo -> {r.status_code}: {r.text[:200]}")

    async def full_login(self, client: httpx.AsyncClient) -> None:
        async with login_driver.new_client() as browser:  # a fresh cookie jar
            browser.cookies.clear()
            tokens = await login_driver.login(browser, self.target)
        self.chains.append(tokens["refresh_token"])
        while len(self.chains) > POOL:
            self.chains.popleft()

    async def run(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        o = self.o
        await asyncio.gather(
            self.fixed_rate("refresh_token", o.refresh_rate, until, self.refresh),
            self.fixed_rate("client_credentials", o.cc_rate, until, self.client_credentials),
            self.fixed_rate("userinfo", o.userinfo_rate, until, self.userinfo),
            self.fixed_rate("full_login", o.login_rate, until, self.full_login),
            Registrations(self.server.issuer, o.registration_rate, browsers=o.concurrency).run(
                seconds, self.registrations
            )
            if o.registration_rate > 0
            else asyncio.sleep(0),
        )


MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def memory_kib(pid: int) -> dict[str, int] | None:
    """VmRSS and its parts (anonymous, file-backed, shared memory), KiB; None if ended."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in MEMORY_FIELDS:
            out[name] = int(value.split()[0])
    return out if "VmRSS" in out else None


def rss_sample(root: int) -> dict[int, dict[str, int]]:
    """The memory of every process of the server; ended ones are left out."""
    out = {}
    for pid in bench.descendants(root):
        kib = memory_kib(pid)
        if kib is not None:
            out[pid] = kib
    return out


async def sampler(
    server: bench.Server, every: float, until: float, series: list, load: Load
) -> None:
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        series.append(
            {
                "t": round(now - t0, 1),
                "memory_kib": {str(p): k for p, k in rss_sample(server.proc.pid).items()},
                "done": {k: v.done for k, v in load.kinds.items()}
                | {"registration": load.registrations.done},
            }
        )
        line = " ".join(
            f"{p}:{k['VmRSS'] / 1024:.1f}(anon {k.get('RssAnon', 0) / 1024:.1f})"
            for p, k in series[-1]["memory_kib"].items()
        )
        bench.log(f"t={series[-1]['t']:6.0f}s RSS MB {line}")
        if now + every > until + 1:
            return
        await asyncio.sleep(max(0.0, t0 + len(series) * every - time.monotonic()))


def growth(series: list, pid: str) -> dict:
    """VmRSS of ``pid`` after the warm-up (the first sample), at the end and at its peak,
    and its growth in MB/min over each third of the run."""
    points = [(s["t"], s["memory_kib"][pid]["VmRSS"]) for s in series if pid in s["memory_kib"]]
    if len(points) < 2:
        return {"samples": len(points)}
    (t_first, first), (t_last, last) = points[0], points[-1]
    thirds = []
    span = t_last - t_first
    for i in range(3):
        a, b = t_first + span * i / 3, t_first + span * (i + 1) / 3
        inside = [p for p in points if a - 1e-6 <= p[0] <= b + 1e-6]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            rate = (inside[-1][1] - inside[0][1]) / 1024 / ((inside[-1][0] - inside[0][0]) / 60)
            thirds.append(round(rate, 2))
    return {
        "samples": len(points),
        "first_mb": round(first / 1024, 1),
        "last_mb": round(last / 1024, 1),
        "peak_mb": round(max(k for _, k in points) / 1024, 1),
        "mb_per_min_by_third": thirds,
    }


async def soak(server: bench.Server, o: argparse.Namespace) -> dict:
    load = Load(server, o)
    await load.prepare()
    bench.log(f"warm-up {o.warmup:g} s (not sampled)")
    await load.run(o.warmup)
    load.kinds.clear()
    load.registrations = Tally()
    series: list = []
    seconds = o.minutes * 60
    until = time.monotonic() + seconds
    cpu0 = bench.cpu_seconds(bench.descendants(server.proc.pid))
    await asyncio.gather(load.run(seconds), sampler(server, o.sample, until, series, load))
    cpu = bench.cpu_seconds(bench.descendants(server.proc.pid)) - cpu0
    names = {str(p): bench.proc_name(p) for p in bench.descendants(server.proc.pid)}
    pids = sorted({p for s in series for p in s["memory_kib"]}, key=int)
    return {
        "series": series,
        "processes": {p: names.get(p, "ended") for p in pids},
        "growth": {p: growth(series, p) for p in pids},
        "requests": {k: vars(v) for k, v in load.kinds.items()}
        | {"registration": load.registrations.summary(seconds)},
        "server_cores": round(cpu / seconds, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of load before sampling")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between RSS samples")
    ap.add_argument("--refresh-rate", type=float, default=100.0)
    ap.add_argument("--cc-rate", type=float, default=20.0)
    ap.add_argument("--userinfo-rate", type=float, default=20.0)
    ap.add_argument("--login-rate", type=float, default=0.5)
    ap.add_argument("--registration-rate", type=float, default=1.5)
    ap.add_argument("--concurrency", type=int, default=8, help="requests at once per kind")
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--idp", help="path of the idp executable (default .venv/bin/idp)")
    o = ap.parse_args()
    idp = bench.find_idp(o.idp)
    if idp is None:
        bench.log("no idp executable: make .venv/.installed")
        return 2
    url = None
    if o.database == "postgresql":
        url = os.environ.get("IDP_BENCH_DATABASE_URL")
        if not url:
            bench.log("--database postgresql needs IDP_BENCH_DATABASE_URL")
            return 2
    outdir = BENCH / "out" / f"soak-{o.database}-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True, exist_ok=True)
    kind = "SQLite" if o.database == "sqlite" else "PostgreSQL"
    db = bench.prepare_ours(idp, outdir, kind, url, o.accounts)
    db.env["IDP_MAIL_DIR"] = str(outdir / "mail")
    server = bench.start_ours(idp, db, o.workers, outdir)
    bench.log(f"{server.label} up at {server.issuer}; {o.minutes:g} minutes")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        result = asyncio.run(soak(server, o))
    finally:
        server.stop()
    result.update(options=vars(o), started=started, machine=bench.machine())
    (outdir / "soak.json").write_text(json.dumps(result, indent=1))
    for pid, g in result["growth"].items():
        bench.log(f"{result['processes'][pid]}: {g}")
    for name, counts in result["requests"].items():
        bench.log(f"{name}: {counts}")
    bench.log(f"server CPU {result['server_cores']} cores; raw: {outdir / 'soak.json'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
