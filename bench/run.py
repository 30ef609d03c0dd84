"""idp benchmark suite: idp side by side with node-oidc-provider (the anchor).

Starts the anchor (bench/anchor/server.js) and idp (`idp serve`, 1 and 2 worker
processes, on SQLite and, with IDP_BENCH_DATABASE_URL, on PostgreSQL; each
database seeded with `idp bench seed`), drives them with the same load
generator in one run, A B A B per endpoint, repeats the token and login runs
with a million accounts, and writes bench/RESULTS.md.

  python bench/run.py            # full run (about 15 minutes with PostgreSQL)
  python bench/run.py --quick    # a few minutes, one round, short runs

Load generators: wrk (Debian package) for discovery, JWKS, client_credentials,
refresh_token (rotation: bench/wrk/refresh.lua), introspection and userinfo;
bench/login.py (httpx) for the full authorization-code login and the password
login (login page + credentials), which is set against the argon2id floor.

Nothing here invents a number: an endpoint or target that does not answer
correctly before its run is reported as "not measured" with the reason.
Only stdlib and httpx (plus argon2-cffi for the floor section).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import login as login_driver  # noqa: E402

WRK_DIR = BENCH / "wrk"
ANCHOR_DIR = BENCH / "anchor"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

EMAIL = "bench@example.test"
PASSWORD = "correct horse battery staple"
REDIRECT_URI = "http://127.0.0.1:9/cb"  # never contacted: the driver stops at the redirect
ANCHOR_CLIENT_ID = "bench-client"
ANCHOR_CLIENT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
FORM = "application/x-www-form-urlencoded"
ACCOUNTS = 10_000  # seeded accounts in the main run
SCALE_ACCOUNTS = 1_000_000  # and in the scale runs

# argon2id parameters used when the service does not say which it uses
# (OWASP's m=19 MiB, t=2, p=1).
DEFAULT_ARGON2 = {"memory_cost": 19456, "time_cost": 2, "parallelism": 1}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


# ------------------------------------------------------------------ processes


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / CLK_TCK


# idp names its argon2id threads so (idp/accounts/passwords.py): their CPU is the hashing.
HASHING_THREAD = "argon2id"


def _tasks_named(pids: list[int], name: str) -> Iterator[str]:
    """The /proc directories of the threads called `name` (their kernel name) in these
    processes (a thread that ends meanwhile is left out)."""
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/comm") as f:
                    if f.read().strip() == name:
                        yield f"/proc/{p}/task/{t}"
            except OSError:
                pass


def threads_named(pids: list[int], name: str) -> int:
    """How many threads called `name` these processes have."""
    return sum(1 for _ in _tasks_named(pids, name))


def thread_cpu_seconds(pids: list[int], name: str) -> float:
    """utime + stime of the threads called `name` in these processes."""
    total = 0
    for task in _tasks_named(pids, name):
        try:
            with open(f"{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    if "multiprocessing.spawn" in cmd:
        return f"worker process (pid {pid})"
    if "multiprocessing.resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "idp serve" in cmd:
        return f"`idp serve` main process (pid {pid})"
    return f"`{cmd[:60]}` (pid {pid})"


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: user + nice + system + steal. irq and
    # softirq are left out: on loopback they are mostly the run's own network stack work,
    # which /proc/<pid>/stat does not charge to the processes.
    return (v[0] + v[1] + v[2] + v[7]) / CLK_TCK


def database_backends(name: str) -> list[int]:
    """PostgreSQL's backend processes serving database `name` (their titles name it)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {name} " in title:
            found.append(int(d))
    return found


class Sampler:
    """Samples VmRSS and CPU of a server's process tree while a run goes on; with
    `database`, also the CPU of PostgreSQL's backends for that database."""

    def __init__(self, root_pid: int, interval: float = 0.25, database: str | None = None) -> None:
        self.root = root_pid
        self.database = database
        self.interval = interval
        self.max_rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for p in descendants(self.root):
                r = rss_kib(p)
                if r is not None:
                    self.max_rss[p] = max(self.max_rss.get(p, 0), r)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.pids = descendants(self.root)
        self.cpu0 = cpu_seconds(self.pids)
        self.hash_cpu0 = thread_cpu_seconds(self.pids, HASHING_THREAD)
        self.db_cpu0 = cpu_seconds(database_backends(self.database)) if self.database else 0.0
        self.busy0 = machine_busy_seconds()
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self.t0
        pids = descendants(self.root)
        self.cpu = cpu_seconds(pids) - self.cpu0
        # Threads that ended during the run take their CPU with them: never below zero.
        self.hash_cpu = max(0.0, thread_cpu_seconds(pids, HASHING_THREAD) - self.hash_cpu0)
        self.db_cpu = (
            max(0.0, cpu_seconds(database_backends(self.database)) - self.db_cpu0)
            if self.database
            else 0.0
        )
        self.busy = machine_busy_seconds() - self.busy0


@dataclass
class Server:
    name: str  # "anchor", "ours-sqlite-1w", "ours-pg-2w", ...
    label: str  # for the report
    issuer: str
    proc: subprocess.Popen
    client_id: str
    client_secret: str
    workers: int = 1
    meta: dict = field(default_factory=dict)
    db: Database | None = None  # idp's database (None: the anchor)
    anchor_database: str | None = None  # the anchor's PostgreSQL database, with its adapter

    @property
    def auth(self) -> str:
        return basic(self.client_id, self.client_secret)

    @property
    def ours(self) -> bool:
        return self.db is not None

    @property
    def database_name(self) -> str | None:
        """PostgreSQL's database name, whose backends' CPU is measured apart."""
        if self.db is None:
            return self.anchor_database
        if self.db.kind != "PostgreSQL":
            return None
        return self.db.url.rsplit("/", 1)[-1].split("?")[0]

    def target(self) -> login_driver.Target:
        """The login driver's target: idp logs in a random seeded account each time."""
        seed = self.db.seed if self.db else {}
        return login_driver.Target(
            self.issuer,
            self.client_id,
            self.client_secret,
            REDIRECT_URI,
            seed.get("email", EMAIL),
            seed.get("password", PASSWORD),
            email_pattern=seed.get("email_pattern"),
            accounts=seed.get("accounts", 0),
            # idp's own login page (a session for the account page); the anchor's login
            # form exists only inside an authorization request (its interaction)
            login_page=f"{self.issuer}/login?return_to=%2Faccount" if self.ours else None,
        )

    def serving_pids(self, pids: list[int], names: dict[int, str]) -> list[int]:
        """The processes that answer requests: the one process, or the workers (every
        process below the supervising main one but multiprocessing's resource tracker)."""
        if self.workers == 1:
            return [p for p in pids if p == self.proc.pid]
        return [
            p for p in pids if p != self.proc.pid and "resource tracker" not in names.get(p, "")
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wait_ready(issuer: str, proc: subprocess.Popen, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            r = httpx.get(issuer + "/.well-known/openid-configuration", timeout=2)
            if r.status_code == 200:
                return r.json()
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.2)
    raise RuntimeError(f"no discovery document within {timeout:.0f}s ({last})")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------ anchor


def ensure_anchor_installed() -> None:
    modules = ANCHOR_DIR / "node_modules"
    if not all((modules / name / "package.json").exists() for name in ("oidc-provider", "pg")):
        log("installing the anchor's npm dependencies (bench/anchor/install.sh)")
        subprocess.run([str(ANCHOR_DIR / "install.sh")], check=True)


def start_anchor(outdir: Path, argon2: dict, database_url: str | None = None) -> Server:
    """node-oidc-provider: its bundled in-memory adapter, or with `database_url` (the bench
    PostgreSQL database) the PostgreSQL adapter of bench/anchor/pg_adapter.js."""
    ensure_anchor_installed()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    logf = outdir / ("anchor-pg.log" if database_url else "anchor.log")
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "ANCHOR_PORT": str(port),
        "ANCHOR_CLIENT_ID": ANCHOR_CLIENT_ID,
        "ANCHOR_CLIENT_SECRET": ANCHOR_CLIENT_SECRET,
        "ANCHOR_REDIRECT_URI": REDIRECT_URI,
        "ANCHOR_EMAIL": EMAIL,
        "ANCHOR_PASSWORD": PASSWORD,
        "ANCHOR_ARGON2_M": str(argon2["memory_cost"]),
        "ANCHOR_ARGON2_T": str(argon2["time_cost"]),
        "ANCHOR_ARGON2_P": str(argon2["parallelism"]),
    }
    database = None
    if database_url:
        # node's pg takes libpq's URL: the same one without SQLAlchemy's driver name.
        env["ANCHOR_DATABASE_URL"] = re.sub(r"^postgresql\+\w+://", "postgresql://", database_url)
        database = urlsplit(database_url).path.lstrip("/")
    proc = subprocess.Popen(
        ["node", "server.js"],
        cwd=ANCHOR_DIR,
        env=env,
        stdout=logf.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(issuer, proc)
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"anchor did not start: {e}\n{tail(logf)}") from e
    pkg = json.loads((ANCHOR_DIR / "node_modules/oidc-provider/package.json").read_text())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return Server(
        "anchor-pg" if database_url else "anchor",
        f"node-oidc-provider {pkg['version']} (node {node}, 1 process"
        + (", PostgreSQL adapter)" if database_url else ")"),
        issuer,
        proc,
        ANCHOR_CLIENT_ID,
        ANCHOR_CLIENT_SECRET,
        1,
        meta={"version": pkg["version"], "node": node},
        anchor_database=database,
    )


# ------------------------------------------------------------------ ours


def find_idp(explicit: str | None) -> Path | None:
    for cand in (
        explicit,
        os.environ.get("IDP_BENCH_IDP"),
        ROOT / ".venv/bin/idp",
        shutil.which("idp"),
    ):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def run_cli(
    idp: Path, args: list[str], env: dict, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(idp), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return json.loads(text)


RESET_POSTGRES = r"""
import sys
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
url = make_url(sys.argv[1])
if "bench" not in (url.database or ""):
    sys.exit(f"refusing to empty {url.database!r}: IDP_BENCH_DATABASE_URL must name a database "
             "used only for benchmarks (its name containing 'bench')")
engine = create_engine(url)
with engine.begin() as c:
    c.execute(text("DROP SCHEMA public CASCADE"))
    c.execute(text("CREATE SCHEMA public"))
    c.execute(text("DROP SCHEMA IF EXISTS anchor CASCADE"))  # the anchor's adapter's
"""


# After a bulk load (`idp bench seed` vacuums and analyzes the accounts): a checkpoint, so
# that writing out the load's pages does not fall into the first measured runs (it put
# 150 ms into the first round's p99 of the refresh grant). Needs superuser or
# pg_checkpoint; without them the runs start unsettled, as noted in the log.
CHECKPOINT_POSTGRES = r"""
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as c:
    c.execute(text("CHECKPOINT"))
"""


@dataclass
class Database:
    """One database idp runs on in this bench run, and the data seeded into it."""

    kind: str  # "SQLite" / "PostgreSQL"
    url: str
    env: dict
    seed: dict = field(default_factory=dict)  # `idp bench seed --json`


def prepare_ours(idp: Path, outdir: Path, kind: str, url: str | None, accounts: int) -> Database:
    """A fresh database (SQLite file, or the emptied bench PostgreSQL database), migrated,
    with keys and `idp bench seed --accounts N` (client, known account, N accounts)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"idp-{kind.lower()}-", dir=outdir))
    (tmp / "keys").mkdir()
    if url is None:
        url = f"sqlite:///{tmp / 'idp.db'}"
    else:
        r = subprocess.run(
            [str(idp.parent / "python"), "-c", RESET_POSTGRES, url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise RuntimeError(f"cannot empty the bench database: {(r.stderr or r.stdout)[-400:]}")
    env = {
        **os.environ,
        "IDP_DATABASE_URL": url,
        "IDP_KEYS_DIR": str(tmp / "keys"),
        "IDP_ISSUER": "http://127.0.0.1:1",  # replaced per start
        # plain-http issuer on loopback: development mode (production refuses http); it
        # changes nothing else on the measured paths (it adds the /demo pages)
        "IDP_ENV": "development",
        "AUTHLIB_INSECURE_TRANSPORT": "1",
        # the anchor signs ID tokens with ES256: the same work on both sides
        "IDP_ID_TOKEN_SIGNING_ALG": "ES256",
        "IDP_LOG_LEVEL": os.environ.get("IDP_LOG_LEVEL", "warning"),
        # every request comes from one address here, and the anchor limits none: the
        # per-address flow limit would refuse the token pools' authorizations
        "IDP_FLOWS_PER_IP_MINUTE": "1000000",
    }
    for step in (["db", "upgrade"], ["keys", "ensure"]):
        r = run_cli(idp, step, env)
        if r.returncode != 0:
            raise RuntimeError(f"`idp {' '.join(step)}` failed: {(r.stderr or r.stdout)[-800:]}")
    db = Database(kind, url, env)
    seed_ours(idp, db, accounts)
    return db


def seed_ours(idp: Path, db: Database, accounts: int) -> None:
    """`idp bench seed`: up to `accounts` seeded accounts; the bench client gets a new secret."""
    r = run_cli(
        idp,
        ["bench", "seed", "--accounts", str(accounts), "--redirect-uri", REDIRECT_URI, "--json"],
        db.env,
    )
    if r.returncode != 0:
        raise RuntimeError(f"`idp bench seed` failed: {(r.stderr or r.stdout)[-800:]}")
    db.seed = last_json(r.stdout)
    log(
        f"{db.kind}: {db.seed['accounts']:,} seeded accounts "
        f"({db.seed['added']:,} added in {db.seed['seconds']:.1f} s)"
    )
    if db.kind == "PostgreSQL" and db.seed["added"]:
        c = subprocess.run(
            [str(idp.parent / "python"), "-c", CHECKPOINT_POSTGRES, db.env["IDP_DATABASE_URL"]],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if c.returncode != 0:
            log(f"PostgreSQL: no CHECKPOINT after the load: {(c.stderr or c.stdout)[-300:]}")


def start_ours(idp: Path, db: Database, workers: int, outdir: Path) -> Server:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **db.env,
        "IDP_ISSUER": issuer,
        "IDP_HOST": "127.0.0.1",
        "IDP_PORT": str(port),
        "IDP_WORKERS": str(workers),
    }
    short = "sqlite" if db.kind == "SQLite" else "pg"
    logf = outdir / f"ours-{short}-{workers}w.log"
    # Its workers' shared counts (/metrics) stay with the run's raw data, not in /tmp.
    metrics_dir = outdir / f"metrics-{short}-{workers}w-{port}"
    metrics_dir.mkdir(mode=0o700, exist_ok=True)
    env["IDP_METRICS_DIR"] = str(metrics_dir)
    proc = subprocess.Popen(
        [str(idp), "serve"],
        env=env,
        stdout=logf.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(issuer, proc, timeout=60)
    except RuntimeError as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"`idp serve` did not start: {e}\n{tail(logf)}") from e
    return Server(
        f"ours-{short}-{workers}w",
        f"idp {db.kind}, {workers} worker{'s' if workers > 1 else ''}",
        issuer,
        proc,
        db.seed["client_id"],
        db.seed["client_secret"],
        workers,
        db=db,
    )


def use_new_secret(servers: list[Server], db: Database) -> None:
    """After a re-seed the bench client has a new secret: wait until every server
    of `db` accepts it (they reload the client cache within IDP_CACHE_POLL_SECONDS)."""
    for s in servers:
        if s.db is not db:
            continue
        s.client_secret = db.seed["client_secret"]
        meta = httpx.get(s.issuer + "/.well-known/openid-configuration").json()
        deadline = time.monotonic() + 30
        while True:
            r = httpx.post(
                meta["token_endpoint"],
                content="grant_type=client_credentials",
                headers={"Authorization": s.auth, "Content-Type": FORM},
            )
            if r.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{s.label} does not accept the new client secret: {r.text}")
            time.sleep(0.5)


def service_argon2(idp: Path | None) -> tuple[dict, str]:
    """The argon2id parameters the service's settings name (IDP_ARGON2_*)."""
    if idp is None:
        return DEFAULT_ARGON2, "default (OWASP m=19 MiB, t=2, p=1): the service is not installed"
    probe = (
        "import json; from idp.settings import Settings; s = Settings.from_env(); "
        "print(json.dumps({'memory_cost': s.argon2_memory_kib, 'time_cost': s.argon2_time_cost, "
        "'parallelism': s.argon2_parallelism}))"
    )
    try:
        r = subprocess.run(
            [str(idp.parent / "python"), "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "IDP_ISSUER": os.environ.get("IDP_ISSUER", "http://127.0.0.1:1")},
        )
        return last_json(r.stdout), "the service's settings (IDP_ARGON2_*)"
    except Exception as e:  # reported, default used
        return (
            DEFAULT_ARGON2,
            f"default (OWASP m=19 MiB, t=2, p=1): reading the settings failed: {e}",
        )


# ------------------------------------------------------------------ measuring


@dataclass
class Result:
    server: str
    round: int
    ok: bool
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    errors: int = 0
    server_cpu_us: float = 0.0  # server CPU per request (all its processes)
    driver_cpu_share: float = 0.0  # load generator CPU, fraction of one core
    max_rss_kib: dict = field(default_factory=dict)
    other_cpu_share: float = 0.0  # CPU used by anything else on the machine, cores
    db_cpu_us: float = 0.0  # PostgreSQL's backends for the server's database, per request
    hash_cpu_us: float = 0.0  # of server_cpu_us: idp's argon2id threads (logins)
    reason: str = ""
    extra: dict = field(default_factory=dict)


def run_wrk(
    server: Server,
    url: str,
    script: str,
    env_extra: dict,
    seconds: float,
    connections: int,
    threads: int,
) -> Result:
    env = {**os.environ, "BENCH_LUA_DIR": str(WRK_DIR), "BENCH_THREADS": str(threads), **env_extra}
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Sampler(server.proc.pid, database=server.database_name) as s:
        p = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out, err = p.communicate(timeout=seconds + 60)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if p.returncode != 0 or not m:
        return Result(server.name, 0, False, reason=f"wrk failed: {(err or out)[-300:]}")
    j = json.loads(m.group(1))
    secs = j["duration_us"] / 1e6
    nerr = sum(j["errors"].values())
    drv = (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / secs
    res = Result(
        server.name,
        0,
        True,
        rps=j["requests"] / secs,
        p50_ms=j["latency_us"]["p50"] / 1000,
        p99_ms=j["latency_us"]["p99"] / 1000,
        requests=j["requests"],
        errors=nerr,
        server_cpu_us=(s.cpu / j["requests"] * 1e6) if j["requests"] else 0.0,
        driver_cpu_share=drv,
        max_rss_kib=dict(s.max_rss),
        extra={"wrk": j},
        other_cpu_share=max(0.0, (s.busy - s.cpu - s.db_cpu) / s.wall - drv),
        db_cpu_us=(s.db_cpu / j["requests"] * 1e6) if j["requests"] else 0.0,
    )
    if j["requests"] and nerr > 0.01 * j["requests"]:
        res.ok = False
        res.reason = f"{nerr} of {j['requests']} requests failed ({j['errors']})"
    return res


# Login forms opened through /authorize before a password-login run against a server
# without a login page of its own, per second of the run: more than any server here can
# use (a login needs an argon2id verify, and the floor is about 110 verifies/s on two cores).
FORMS_PER_SECOND = 150


def open_forms(target: login_driver.Target, seconds: float) -> list | None:
    """Login forms opened through /authorize for a run of ``seconds`` (None: not needed)."""
    if target.login_page:
        return None

    async def go() -> list:
        async with login_driver.new_client() as c:
            await target.discover(c)
        return await login_driver.open_login_forms(target, int(seconds * FORMS_PER_SECOND) + 10)

    return asyncio.run(go())


def run_login(server: Server, seconds: float, concurrency: int, password_only: bool) -> Result:
    target = server.target()
    starts = open_forms(target, seconds) if password_only else None
    with Sampler(server.proc.pid, database=server.database_name) as s:
        j = asyncio.run(
            login_driver.run_logins(
                target, seconds, concurrency, password_only=password_only, starts=starts
            )
        )
    res = Result(
        server.name,
        0,
        True,
        rps=j["logins_per_s"],
        p50_ms=j["p50_ms"],
        p99_ms=j["p99_ms"],
        requests=j["logins"],
        errors=j["errors"],
        server_cpu_us=(s.cpu / j["logins"] * 1e6) if j["logins"] else 0.0,
        driver_cpu_share=j["driver_cpu_share"],
        max_rss_kib=dict(s.max_rss),
        extra=j,
        other_cpu_share=max(0.0, (s.busy - s.cpu - s.db_cpu) / s.wall - j["driver_cpu_share"]),
        db_cpu_us=(s.db_cpu / j["logins"] * 1e6) if j["logins"] else 0.0,
        hash_cpu_us=(s.hash_cpu / j["logins"] * 1e6) if j["logins"] else 0.0,
    )
    if j["logins"] == 0 or j["errors"] > 0.01 * max(1, j["logins"]):
        res.ok = False
        res.reason = (
            f"{j['errors']} failed logins, {j['logins']} completed; first: {j['first_errors'][:1]}"
        )
    elif j.get("ran_out_of_forms"):
        res.ok = False
        res.reason = f"used up the {len(starts or [])} login forms opened before the run"
    return res


@dataclass
class Endpoint:
    key: str
    title: str
    what: str
    prepare: object  # (server, meta) -> dict with url/script/env, or raises
    kind: str = "wrk"  # or "login": bench/login.py
    password_only: bool = False  # login: the login page and the credentials only


def mint_tokens(server: Server, n: int) -> list[dict]:
    return asyncio.run(login_driver.mint(server.target(), n, concurrency=4))


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def prep_discovery(server: Server, meta: dict, state: dict) -> dict:
    url = server.issuer + "/.well-known/openid-configuration"
    r = httpx.get(url)
    check(
        r.status_code == 200 and r.json().get("issuer") == server.issuer,
        f"GET discovery -> {r.status_code}",
    )
    return {"url": url, "script": "get.lua", "env": {}}


def prep_jwks(server: Server, meta: dict, state: dict) -> dict:
    url = meta.get("jwks_uri")
    check(bool(url), "discovery has no jwks_uri")
    r = httpx.get(url)
    check(r.status_code == 200 and r.json().get("keys"), f"GET {url} -> {r.status_code}")
    return {"url": url, "script": "get.lua", "env": {}}


def endpoint_url(meta: dict, key: str) -> str:
    url = meta.get(key)
    check(bool(url), f"the discovery document has no {key}")
    return url


def prep_cc(server: Server, meta: dict, state: dict) -> dict:
    url = endpoint_url(meta, "token_endpoint")
    body = "grant_type=client_credentials"
    r = httpx.post(
        url,
        content=body,
        headers={"Authorization": server.auth, "Content-Type": FORM},
    )
    check(
        r.status_code == 200 and "access_token" in r.json(),
        f"client_credentials -> {r.status_code}: {r.text[:200]}",
    )
    tok = r.json()["access_token"]
    state["cc_token_format"] = "JWT" if tok.count(".") == 2 else "opaque"
    return {
        "url": url,
        "script": "post.lua",
        "env": {"BENCH_BODY": body, "BENCH_AUTH": server.auth},
    }


def user_tokens(server: Server, state: dict) -> dict:
    if "tokens" not in state:
        state["tokens"] = mint_tokens(server, 1)[0]
    return state["tokens"]


def prep_userinfo(server: Server, meta: dict, state: dict) -> dict:
    url = endpoint_url(meta, "userinfo_endpoint")
    at = user_tokens(server, state)["access_token"]
    r = httpx.get(url, headers={"Authorization": f"Bearer {at}"})
    check(
        r.status_code == 200 and "sub" in r.json(), f"userinfo -> {r.status_code}: {r.text[:200]}"
    )
    state["at_format"] = "JWT" if at.count(".") == 2 else "opaque"
    return {"url": url, "script": "get.lua", "env": {"BENCH_AUTH": f"Bearer {at}"}}


def prep_introspection(server: Server, meta: dict, state: dict) -> dict:
    url = endpoint_url(meta, "introspection_endpoint")
    at = user_tokens(server, state)["access_token"]
    body = "token=" + quote(at, safe="") + "&token_type_hint=access_token"
    r = httpx.post(
        url,
        content=body,
        headers={"Authorization": server.auth, "Content-Type": FORM},
    )
    check(
        r.status_code == 200 and r.json().get("active") is True,
        f"introspection -> {r.status_code}: {r.text[:200]}",
    )
    return {
        "url": url,
        "script": "post.lua",
        "env": {"BENCH_BODY": body, "BENCH_AUTH": server.auth},
    }


def prep_refresh(server: Server, meta: dict, state: dict) -> dict:
    url = endpoint_url(meta, "token_endpoint")
    n = state["refresh_pool"]
    toks = mint_tokens(server, n + 1)
    check(all("refresh_token" in t for t in toks), "the code exchange returned no refresh_token")
    # check rotation once: the refresh answers with a new refresh token
    probe = toks.pop()
    r = httpx.post(
        url,
        content="grant_type=refresh_token&refresh_token=" + quote(probe["refresh_token"], safe=""),
        headers={"Authorization": server.auth, "Content-Type": FORM},
    )
    check(r.status_code == 200, f"refresh_token grant -> {r.status_code}: {r.text[:200]}")
    new = r.json().get("refresh_token")
    check(bool(new) and new != probe["refresh_token"], "refresh did not rotate the refresh token")
    path = Path(state["outdir"]) / f"refresh-{server.name}-{time.monotonic_ns()}.txt"
    path.write_text("\n".join(t["refresh_token"] for t in toks) + "\n")
    return {
        "url": url,
        "script": "refresh.lua",
        "env": {"BENCH_AUTH": server.auth, "BENCH_TOKENS": str(path)},
        "fresh_each_run": True,
    }


ENDPOINTS = [
    Endpoint("discovery", "Discovery", "GET /.well-known/openid-configuration", prep_discovery),
    Endpoint("jwks", "JWKS", "GET jwks_uri", prep_jwks),
    Endpoint(
        "client_credentials",
        "Token: client_credentials",
        "POST token_endpoint grant_type=client_credentials, client_secret_basic",
        prep_cc,
    ),
    Endpoint(
        "refresh_token",
        "Token: refresh_token with rotation",
        "POST token_endpoint grant_type=refresh_token; every refresh token used once "
        "(wrk/refresh.lua: per-connection rotation chains seeded by full logins)",
        prep_refresh,
    ),
    Endpoint(
        "introspection",
        "Introspection",
        "POST introspection_endpoint token=<user access token>, client_secret_basic",
        prep_introspection,
    ),
    Endpoint(
        "userinfo",
        "UserInfo",
        "GET userinfo_endpoint, Authorization: Bearer <user access token>",
        prep_userinfo,
    ),
    Endpoint(
        "login",
        "Full authorization-code login",
        "authorize (PKCE) -> login form (email, password; argon2id verify) -> consent -> code -> "
        "token exchange; fresh cookie jar per login (bench/login.py, httpx)",
        None,
        kind="login",
    ),
    Endpoint(
        "password_login",
        "Password login",
        "GET the login page, POST its form (email, password; argon2id verify), answered with a "
        "redirect: what a citizen does to log in. idp: `/login?return_to=/account` with an empty "
        "cookie jar, ending in a new session (bench/login.py --password-only); the anchor: the "
        "login form of an interaction, opened through /authorize before the run (not measured), "
        "ending in the interaction's result (its session is written at the next step, the "
        "authorization's resumption, which is not part of this run)",
        None,
        kind="login",
        password_only=True,
    ),
]


# ------------------------------------------------------------------ argon2 floor


def argon2_floor(
    params: dict, seconds: float, concurrency: int, single_seconds: float = 1.0
) -> dict:
    """argon2-cffi with the service's parameters, the floor a login is set against.

    One thread first: the wall and CPU time of a hash (median of 5) and of a verify
    (median of those in ``single_seconds``, at least 9); the verify's CPU time is the
    floor's CPU per verify (the least a verify costs; side by side, verifies slow each
    other down through the shared cache and memory, which would make a server's own work
    look smaller). Then ``concurrency`` threads verifying back to back (as many as the
    login runs' virtual users): the floor's verifies/s, and the CPU per verify at that
    concurrency for comparison.
    """
    from argon2 import PasswordHasher

    ph = PasswordHasher(
        time_cost=params["time_cost"],
        memory_cost=params["memory_cost"],
        parallelism=params["parallelism"],
    )
    h = ph.hash(PASSWORD)
    hash_t, verify_t, verify_cpu = [], [], []
    for _ in range(5):
        t = time.perf_counter()
        ph.hash(PASSWORD)
        hash_t.append(time.perf_counter() - t)
    until = time.perf_counter() + single_seconds
    while len(verify_t) < 9 or time.perf_counter() < until:
        t, c = time.perf_counter(), time.thread_time()
        ph.verify(h, PASSWORD)
        verify_cpu.append(time.thread_time() - c)
        verify_t.append(time.perf_counter() - t)
    count = [0] * concurrency
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            ph.verify(h, PASSWORD)
            count[i] += 1

    t0, cpu0 = time.perf_counter(), time.process_time()
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    import importlib.metadata as md

    return {
        "hash_ms": statistics.median(hash_t) * 1000,
        "verify_ms": statistics.median(verify_t) * 1000,
        "verify_cpu_ms": statistics.median(verify_cpu) * 1000,
        "verifies_timed": len(verify_cpu),
        "threads": concurrency,
        "verify_per_s": sum(count) / wall,
        "concurrent_verify_cpu_ms": cpu / sum(count) * 1000 if sum(count) else float("nan"),
        "argon2_cffi": md.version("argon2-cffi"),
    }


# Seconds of verifies for the floor measured beside each login run.
PAIRED_FLOOR_SECONDS = 3.0


def verify_cpu_ms(params: dict, threads: int, seconds: float) -> float:
    """CPU per argon2id verify (argon2-cffi, the service's parameters) with ``threads``
    threads verifying back to back for ``seconds``; each thread's first verify (its
    memory's first use) is left out."""
    from argon2 import PasswordHasher

    ph = PasswordHasher(
        time_cost=params["time_cost"],
        memory_cost=params["memory_cost"],
        parallelism=params["parallelism"],
    )
    h = ph.hash(PASSWORD)
    count = [0] * threads
    cpu = [0.0] * threads
    ready = threading.Barrier(threads + 1)
    stop = [0.0]

    def worker(i: int) -> None:
        ph.verify(h, PASSWORD)
        ready.wait()
        c = time.thread_time()
        while time.perf_counter() < stop[0]:
            ph.verify(h, PASSWORD)
            count[i] += 1
        cpu[i] = time.thread_time() - c

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ths:
        t.start()
    stop[0] = time.perf_counter() + 1e9
    ready.wait()
    stop[0] = time.perf_counter() + seconds
    for t in ths:
        t.join()
    return sum(cpu) / max(1, sum(count)) * 1000


def paired_floor(s: Server, o: Options) -> dict:
    """The floor a login run is set against, measured right before it on the same machine:
    CPU per verify with as many verifies at once as the server hashes at once (idp: its
    argon2id threads; the anchor: one per core, libuv's pool being larger). The machine's
    speed drifts within minutes (a verify alone took 21.8 to 24.9 ms CPU in one run), and
    two verifies at once cost each other several percent through the shared cache and
    memory: a login run is compared with a floor of its own moment and concurrency."""
    if not o.argon2:
        return {}
    if s.ours:
        threads = threads_named(descendants(s.proc.pid), HASHING_THREAD) or 1
    else:
        threads = os.cpu_count() or 1
    try:
        ms = verify_cpu_ms(o.argon2, threads, PAIRED_FLOOR_SECONDS)
    except Exception as e:  # reported as not measured, never hidden
        log(f"{s.name}: no floor beside the run: {type(e).__name__}: {e}")
        return {}
    return {"floor_cpu_ms": ms, "floor_threads": threads}


def quieter_floor(measured: list[dict]) -> dict:
    """Of the floors measured in one run (at its start and at its end), the one whose verify
    cost least CPU: a busy moment of the shared machine must not lower the bar the logins'
    CPU is set against. Each measurement's CPU per verify is kept for the report."""
    floor = min(measured, key=lambda f: f["verify_cpu_ms"])
    return {
        **floor,
        "verify_cpu_ms_measured": [(f.get("when", ""), f["verify_cpu_ms"]) for f in measured],
    }


# ------------------------------------------------------------------ one endpoint, A B A B


@dataclass
class Options:
    seconds: float
    warmup: float
    rounds: int
    connections: int
    threads: int
    login_concurrency: int
    outdir: Path
    argon2: dict | None = None  # the service's argon2id parameters (the floor's)


def login_probe(s: Server, password_only: bool = False) -> None:
    async def probe() -> None:
        async with login_driver.new_client() as c:
            t = s.target()
            await t.discover(c)
            if not password_only:
                await login_driver.login(c, t)
                return
            start = (
                login_driver.LoginStart(t.login_page)
                if t.login_page
                else await login_driver.open_login_form(c, t)
            )
            c.cookies.clear()  # a fresh browser, or the opened form's own cookies
            await login_driver.password_login(c, t, start)

    asyncio.run(probe())


def run_endpoint(
    ep: Endpoint, servers: list[Server], o: Options, procnames: dict[int, str]
) -> list[Result]:
    """Warm each server up on the endpoint (not recorded), then rounds of A B A B."""
    results: list[Result] = []
    preps: dict[str, dict | None] = {}
    states: dict[str, dict] = {}
    for s in servers:
        states[s.name] = {"outdir": str(o.outdir), "refresh_pool": o.connections * 3}
        try:
            if ep.kind == "wrk":
                meta = httpx.get(s.issuer + "/.well-known/openid-configuration").json()
                preps[s.name] = ep.prepare(s, meta, states[s.name])
            else:
                login_probe(s, ep.password_only)
                preps[s.name] = {}
        except Exception as e:
            preps[s.name] = None
            results.append(Result(s.name, 1, False, reason=f"{type(e).__name__}: {e}"))
            log(f"{ep.key} / {s.name}: not measured: {e}")
    for s in servers:
        p = preps.get(s.name)
        if p is None:
            continue
        if ep.kind == "login":
            with contextlib.suppress(Exception):
                run_login(s, o.warmup, o.login_concurrency, ep.password_only)
            continue
        run_wrk(s, p["url"], p["script"], p["env"], o.warmup, o.connections, o.threads)
        if p.get("fresh_each_run"):
            # The warm-up used its data up (refresh tokens rotated): round 1 gets its own,
            # as every later round does.
            try:
                meta = httpx.get(s.issuer + "/.well-known/openid-configuration").json()
                preps[s.name] = ep.prepare(s, meta, states[s.name])
            except Exception as e:
                preps[s.name] = None
                results.append(Result(s.name, 1, False, reason=f"{type(e).__name__}: {e}"))
                log(f"{ep.key} / {s.name}: not measured: {e}")
    for rnd in range(1, o.rounds + 1):
        for s in servers:
            p = preps.get(s.name)
            if p is None:
                continue
            if ep.kind == "login":
                paired = paired_floor(s, o)
                r = run_login(s, o.seconds, o.login_concurrency, ep.password_only)
                if paired:
                    r.extra.update(paired)
            else:
                if p.get("fresh_each_run") and rnd > 1:
                    try:
                        meta = httpx.get(s.issuer + "/.well-known/openid-configuration").json()
                        p = ep.prepare(s, meta, states[s.name])
                    except Exception as e:
                        results.append(Result(s.name, rnd, False, reason=str(e)))
                        continue
                r = run_wrk(s, p["url"], p["script"], p["env"], o.seconds, o.connections, o.threads)
            r.round = rnd
            for pid in r.max_rss_kib:
                procnames.setdefault(pid, proc_name(pid))
            results.append(r)
            log(
                f"{ep.key:18s} round {rnd} {s.name:15s} "
                + (
                    f"{r.rps:10.1f}/s p50 {r.p50_ms:7.2f} ms p99 {r.p99_ms:7.2f} ms "
                    f"CPU {r.server_cpu_us:8.0f} µs errors {r.errors}"
                    + (
                        f" (floor beside it: {r.extra['floor_cpu_ms'] * 1000:.0f} µs per verify, "
                        f"{r.extra['floor_threads']} at once)"
                        if r.extra.get("floor_cpu_ms")
                        else ""
                    )
                    if r.ok
                    else f"not measured: {r.reason}"
                )
            )
    return results


# ------------------------------------------------------------------ report


with open("/proc/loadavg") as _f:
    LOADAVG_AT_START = " ".join(_f.read().split()[:3])


def _source() -> dict:
    """The commit and branch of the code under test, with a note if it had local changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True
        ).stdout.strip()

    # The report's own previous version is not a change to the code under test.
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)bench/RESULTS.md")
    commit = git("rev-parse", "--short", "HEAD") or "?"
    return {
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


# Read when the run starts, as the servers are: a commit made while it runs is not the
# code it measured.
SOURCE_AT_START = _source()


def machine() -> dict:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrkv = (wrk.stdout + wrk.stderr).split("\n")[0].split(" [")[0]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrkv,
        "loadavg": LOADAVG_AT_START,
        "commit": SOURCE_AT_START["commit"],
        "branch": SOURCE_AT_START["branch"],
    }


OTHER_CPU_WARN = 0.15


def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def summarize(results: list[Result], server: str) -> Result | None:
    rs = [r for r in results if r.server == server and r.ok]
    if not rs:
        return None
    spread = (max(r.rps for r in rs) - min(r.rps for r in rs)) / statistics.mean(r.rps for r in rs)
    paired = [r for r in rs if r.extra.get("floor_cpu_ms")]
    extra: dict = {"spread": spread, "n": len(rs)}
    if paired and len(paired) == len(rs):
        # each round against the floor measured right before it
        extra["paired_over"] = statistics.mean(
            r.server_cpu_us / 1000 / r.extra["floor_cpu_ms"] - 1 for r in paired
        )
        extra["floor_cpu_ms"] = statistics.mean(r.extra["floor_cpu_ms"] for r in paired)
        extra["floor_threads"] = max(r.extra["floor_threads"] for r in paired)
    return Result(
        server,
        0,
        True,
        extra=extra,
        rps=statistics.mean(r.rps for r in rs),
        p50_ms=statistics.mean(r.p50_ms for r in rs),
        p99_ms=statistics.mean(r.p99_ms for r in rs),
        server_cpu_us=statistics.mean(r.server_cpu_us for r in rs),
        db_cpu_us=statistics.mean(r.db_cpu_us for r in rs),
        hash_cpu_us=statistics.mean(r.hash_cpu_us for r in rs),
    )


def cpu_str(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"


def serving_rss_kib(results: list[Result], s: Server, names: dict[int, str]) -> int | None:
    """Largest VmRSS of one serving process of `s` during these runs."""
    seen = [
        v
        for r in results
        if r.server == s.name and r.ok
        for pid, v in r.max_rss_kib.items()
        if pid in s.serving_pids([pid], names)
    ]
    return max(seen) if seen else None


def ep_title(key: str) -> str:
    return next(ep.title for ep in ENDPOINTS if ep.key == key)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def durable_refresh(res: dict) -> str:
    """What the anchor makes of refreshes with a durable store, as idp's (if it ran)."""
    memory = summarize(res.get("refresh_token", []), "anchor")
    durable = summarize(res.get("refresh_token", []), "anchor-pg")
    if not (memory and durable):
        return ""
    return (
        f" With its PostgreSQL adapter (bench/anchor/pg_adapter.js) the anchor's rate is "
        f"{fmt(durable.rps)} req/s ({durable.rps / memory.rps:.2f}x its in-memory rate; "
        f"{cpu_str(durable.server_cpu_us)} of its own CPU and {cpu_str(durable.db_cpu_us)} of "
        "PostgreSQL's per refresh): see the rows against it above."
    )


def targets(ctx: dict) -> list[str]:
    """Issue 9's targets, each checked against this run's numbers."""
    rows: list[str] = []
    res = ctx["results"]
    ours = [s for s in ctx["servers"] if s.ours]
    # Against the in-memory anchor, and the anchor with a durable store as idp's (when it ran;
    # its in-memory one is development-only).
    for anchor_name, against in (
        ("anchor", "anchor"),
        ("anchor-pg", "anchor with its PostgreSQL adapter"),
    ):
        for key in ("client_credentials", "refresh_token"):
            anc = summarize(res.get(key, []), anchor_name)
            if anc is None and anchor_name != "anchor":
                continue
            for s in ours:
                sm = summarize(res.get(key, []), s.name)
                if not (sm and anc):
                    if anchor_name == "anchor":
                        rows.append(
                            f"| {ep_title(key)}: req/s per worker process ≥ {against} | {s.label} | "
                            "not measured | — |"
                        )
                    continue
                per = sm.rps / s.workers
                db = f" + database {cpu_str(sm.db_cpu_us)}" if s.database_name else ""
                anc_db = f" + database {cpu_str(anc.db_cpu_us)}" if anchor_name != "anchor" else ""
                rows.append(
                    f"| {ep_title(key)}: req/s per worker process ≥ {against} | {s.label} | "
                    f"{fmt(per)} vs {fmt(anc.rps)} req/s (**{per / anc.rps:.2f}x**); CPU/req "
                    f"{cpu_str(sm.server_cpu_us)}{db} vs {cpu_str(anc.server_cpu_us)}{anc_db} | "
                    f"{verdict(per >= anc.rps)} |"
                )
    for key in ("discovery", "jwks"):
        anc = summarize(res.get(key, []), "anchor")
        for s in ours:
            sm = summarize(res.get(key, []), s.name)
            if sm and anc:
                rows.append(
                    f"| {ep_title(key)}: req/s ≥ anchor | {s.label} | {fmt(sm.rps)} vs {fmt(anc.rps)} req/s "
                    f"(**{sm.rps / anc.rps:.2f}x**) | {verdict(sm.rps >= anc.rps)} |"
                )
    fl = ctx.get("floor")
    for key, what in (
        ("password_login", "Password login (login page + credentials)"),
        ("login", "Full authorization-code login (7 requests, for comparison)"),
    ):
        for s in ours:
            sm = summarize(res.get(key, []), s.name)
            if not (fl and sm):
                continue
            over = login_over(sm, fl)
            bar = (
                f"{sm.extra['floor_cpu_ms']:.1f} ms ({floor_verifies(sm)}, beside each run); "
                f"{floor_over(sm, fl) * 100:+.0f}% against one verify alone at the run's quietest "
                f"({fl['verify_cpu_ms']:.1f} ms)"
                if "paired_over" in sm.extra
                else f"{fl['verify_cpu_ms']:.1f} ms"
            )
            rows.append(
                f"| {what}: ≤ +20% over the argon2id floor (server CPU per login vs CPU per verify) | "
                f"{s.label} | {sm.server_cpu_us / 1000:.1f} ms (**{over * 100:+.0f}%**) vs {bar}; "
                f"{sm.rps:.1f} logins/s vs {fl['verify_per_s']:.1f} verifies/s "
                f"| {verdict(over <= 0.20) if key == 'password_login' else '(reference)'} |"
            )
    for kind, sc in ctx["scale"].items():
        for key in ("client_credentials", "refresh_token", "login"):
            for s in ours:
                if s.db is None or s.db.kind != kind:
                    continue
                base = summarize(scale_base(ctx, sc, key), s.name)
                big = summarize(sc["results"].get(key, []), s.name)
                if not (base and big):
                    continue
                noise = p99_noise(scale_base(ctx, sc, key), s.name)
                ratio = big.p99_ms / base.p99_ms
                rows.append(
                    f"| {ep_title(key)}: p99 unchanged from {ctx['accounts']:,} to {sc['accounts']:,} accounts | "
                    f"{s.label} | p99 {base.p99_ms:.1f} → {big.p99_ms:.1f} ms ({ratio:.2f}x; rounds at "
                    f"{ctx['accounts']:,} differ by {noise * 100:.0f}%); CPU/req {cpu_str(base.server_cpu_us)} → "
                    f"{cpu_str(big.server_cpu_us)} | {verdict(ratio <= 1 + max(noise, 0.25))} |"
                )
    worst = [
        (serving_rss_kib([r for v in res.values() for r in v], s, ctx["procnames"]), s)
        for s in ours
    ]
    for kib, s in worst:
        if kib:
            rows.append(
                f"| Memory: < 150 MB RSS per worker under load | {s.label} | {kib / 1024:.0f} MiB "
                f"| {verdict(kib * 1024 < 150e6)} |"
            )
    return rows


def floor_over(sm: Result, floor: dict) -> float:
    """How much more server CPU a login costs than one argon2id verify (0.2: +20%)."""
    return sm.server_cpu_us / 1000 / floor["verify_cpu_ms"] - 1


def login_over(sm: Result, floor: dict) -> float:
    """The target's measure: a login's server CPU over the floor measured beside each of its
    runs (paired_floor), where it was; else over the run's single floor."""
    return sm.extra.get("paired_over", floor_over(sm, floor))


def floor_verifies(sm: Result) -> str:
    n = sm.extra.get("floor_threads", 1)
    return "one verify at a time" if n == 1 else f"{n} verifies at once"


def cores(sm: Result) -> float:
    """How many cores a server kept busy: requests/s times CPU per request."""
    return sm.rps * sm.server_cpu_us / 1e6


def why_not_met(ctx: dict) -> list[str]:
    """What stands between idp and each target it misses in this run, from the numbers."""
    res, out = ctx["results"], []
    ours = [s for s in ctx["servers"] if s.ours]
    one = [s for s in ours if s.workers == 1]
    cc_anchor = summarize(res.get("client_credentials", []), "anchor")
    cc = [(s, summarize(res.get("client_credentials", []), s.name)) for s in one]
    if cc_anchor and any(sm and sm.rps < cc_anchor.rps for _, sm in cc):
        per = "; ".join(
            f"{s.label}: {cpu_str(sm.server_cpu_us)} per request, {cores(sm):.2f} cores"
            for s, sm in cc
            if sm
        )
        out.append(
            "**client_credentials per worker process.** The work per request is close to the "
            f"anchor's ({per}; anchor {cpu_str(cc_anchor.server_cpu_us)}, {cores(cc_anchor):.2f} cores): "
            "one node process spreads over more than one core (libuv's threads, V8's garbage collector "
            "threads), a CPython worker runs its Python on one core at a time. Per core idp is about even; "
            "per process it is behind, and ahead as soon as a second worker runs (the 2-worker rows)."
        )
    multi = [
        (s, sm)
        for s in ours
        if s.workers > 1 and (sm := summarize(res.get("client_credentials", []), s.name))
    ]
    if cc_anchor and any(sm.rps / s.workers < cc_anchor.rps for s, sm in multi):
        per = "; ".join(
            f"{s.label}: {fmt(sm.rps)} req/s in all ({sm.rps / cc_anchor.rps:.2f}x the anchor), "
            f"{cores(sm):.2f} cores for {s.workers} processes"
            for s, sm in multi
        )
        out.append(
            f"**client_credentials per worker process, several workers.** This machine has "
            f"{os.cpu_count()} cores, shared by the worker processes and the load generator, so no "
            f"worker has a core of its own ({per}): the rate per process falls as processes are "
            "added while the total rises. The 1-worker rows compare one process with one process."
        )
    rt_anchor = summarize(res.get("refresh_token", []), "anchor")
    if rt_anchor and any(
        (sm := summarize(res.get("refresh_token", []), s.name))
        and sm.rps / s.workers < rt_anchor.rps
        for s in ours
    ):
        out.append(
            "**refresh_token per worker process.** Each rotation is a durable write in idp: the live "
            "token is consumed (atomically, so a replay is detected and revokes the family) and the new "
            "one stored in one commit: on SQLite three short statements, on PostgreSQL one statement "
            "whose commit waits for the WAL flush (the worker's event loop awaits it and serves other "
            "requests meanwhile). The anchor keeps tokens in its process's memory (the bundled "
            "in-memory adapter, no durability). On PostgreSQL the database's own CPU (database CPU "
            "column) comes on top, on the same two cores; with two workers on SQLite the processes "
            "take turns at the one writer lock, and each commit of one worker empties the other's "
            "page cache (SQLite keeps one per connection): measured by hand, a worker made 3 read "
            "system calls per refresh alone and 21 beside a second worker, and its CPU per refresh "
            "rose from about 230 to 310 µs." + durable_refresh(res)
        )
    fl = ctx.get("floor")
    if fl and any(
        (sm := summarize(res.get("password_login", []), s.name)) and login_over(sm, fl) > 0.2
        for s in ours
    ):
        anc = summarize(res.get("password_login", []), "anchor")
        anchor_over = (
            f" The anchor spends {login_over(anc, fl) * 100:+.0f}% on its two requests (which "
            "write no session yet)."
            if anc
            else ""
        )
        out.append(
            "**Password login over the argon2id floor.** Two HTTP requests around one argon2id verify: "
            "the login page (rendered once per language and reused, with this browser's CSRF token "
            "filled in), then the credentials: the account and its "
            "throttling counters read, the verify, and on success the new session (session fixation "
            "defence), the login time and a hash-chained audit event written and committed. +20% of "
            f"one verify leaves {fl['verify_cpu_ms'] * 0.2:.1f} ms for the two requests' HTTP, HTML and "
            "database work. Each run is set against a floor measured right before it, with as many "
            "verifies at once as the server hashes at once; a row within a few points of the bar "
            "can land on either side of it from one run to the next (this machine's speed drifts "
            "within minutes). The split by thread (section below) shows where the CPU goes: the "
            "hashing threads cost about one verify, the rest is the requests' own work, which runs beside a "
            "hash on the other core (its 19 MiB pass through the shared cache and memory): measured "
            "by hand on a 2-core machine, the login's account lookup took about 1 ms of its thread's "
            "CPU inside the server under logins, 0.12 ms on a quiet core. Fewer instructions help "
            f"in proportion; the slowdown itself comes with the hash.{anchor_over}"
        )
    for kind, sc in ctx["scale"].items():
        for s in ours:
            if s.db is None or s.db.kind != kind:
                continue
            for key in ("client_credentials", "refresh_token", "login"):
                base = summarize(scale_base(ctx, sc, key), s.name)
                big = summarize(sc["results"].get(key, []), s.name)
                noise = p99_noise(scale_base(ctx, sc, key), s.name)
                if not (base and big) or big.p99_ms <= base.p99_ms * (1 + max(noise, 0.25)):
                    continue
                others = [
                    r.other_cpu_share for r in sc["results"][key] if r.server == s.name and r.ok
                ]
                if max(others, default=0) > OTHER_CPU_WARN:
                    cause = (
                        "other work shared the machine during those runs ("
                        + ", ".join(f"{o * 100:.0f}%" for o in others)
                        + " of a core)"
                    )
                elif key == "client_credentials":
                    cause = (
                        "this grant reads no database row (the client comes from memory), so its tail "
                        "is the scheduling of the workers and the load generator on two cores (the "
                        f"rounds at {ctx['accounts']:,} already differ by {noise * 100:.0f}%)"
                    )
                elif kind == "SQLite" and s.workers > 1:
                    cause = (
                        "two processes share SQLite's one writer lock, and the one that waits sleeps in "
                        "SQLite's busy handler (1 to 100 ms at a time), so the tail of writing requests "
                        f"varies from run to run (the rounds at {ctx['accounts']:,} already differ by "
                        f"{noise * 100:.0f}%); PostgreSQL, the production database, has no such lock"
                    )
                else:
                    cause = "the cause is not visible in these numbers; compare the per-run tables"
                out.append(
                    f"**{ep_title(key)}, {s.label}, p99 at {sc['accounts']:,} accounts.** CPU per request "
                    f"{cpu_str(base.server_cpu_us)} → {cpu_str(big.server_cpu_us)}. Nothing on this path "
                    f"scans accounts (lookups by primary key or unique index); here {cause}."
                )
    rss = [
        (s, serving_rss_kib([r for v in res.values() for r in v], s, ctx["procnames"]))
        for s in ours
    ]
    if any(kib and kib * 1024 >= 150e6 for _, kib in rss):
        out.append(
            "**Memory.** A worker starts at about 95 MiB (CPython with litestar, SQLAlchemy, authlib, "
            "uvicorn; psycopg adds about 10 MiB on PostgreSQL) and each argon2id hash needs 19 MiB "
            "(m=19456 KiB) while it runs. idp hashes in the hasher's own threads and keeps glibc to one "
            "malloc arena, so that memory is reused rather than multiplied per thread (before: 250 MiB "
            "and growing); what remains above the start is that buffer and the heap fragmentation around "
            "it under concurrent logins."
        )
    return out


def scale_base(ctx: dict, sc: dict, key: str) -> list[Result]:
    """The runs a scale run is compared with: the same endpoint with the main run's accounts,
    measured right before the seeding (else those of the main run)."""
    return sc.get("before", {}).get(key) or ctx["results"].get(key, [])


def p99_noise(results: list[Result], server: str) -> float:
    """Relative spread of p99 between the rounds of one server."""
    ps = [r.p99_ms for r in results if r.server == server and r.ok]
    return (max(ps) - min(ps)) / statistics.mean(ps) if len(ps) > 1 else 0.0


def runs_table(a, res: list[Result], ep: Endpoint, label: dict) -> None:
    unit = "logins/s" if ep.kind == "login" else "req/s"
    a(
        f"| run | server | {unit} | p50 ms | p99 ms | {'logins' if ep.kind == 'login' else 'requests'} | errors | "
        "server CPU/req | database CPU/req | load gen CPU | other CPU |"
    )
    a("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res:
        if r.ok:
            a(
                f"| {r.round} | {label.get(r.server, r.server)} | {fmt(r.rps, 1 if ep.kind == 'login' else 0)} | "
                f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} | {r.errors} | "
                f"{cpu_str(r.server_cpu_us)} | {cpu_str(r.db_cpu_us) if r.db_cpu_us else '—'} | "
                f"{r.driver_cpu_share * 100:.0f}% | "
                f"{r.other_cpu_share * 100:.0f}%{' ⚠' if r.other_cpu_share > OTHER_CPU_WARN else ''} |"
            )
        else:
            a(f"| {r.round} | {label.get(r.server, r.server)} | not measured | | | | | | | | |")
    for r in res:
        if not r.ok:
            a("")
            a(f"- not measured ({label.get(r.server, r.server)}, round {r.round}): {r.reason}")


def write_report(path: Path, ctx: dict) -> None:
    m = ctx["machine"]
    L: list[str] = []
    a = L.append
    a("# Benchmark results: idp vs node-oidc-provider")
    a("")
    a(
        f"Written by `python bench/run.py{' --quick' if ctx['quick'] else ''}` on {ctx['date']}. "
        "Regenerate with `make bench` (or `bench/run.sh`). How it works: [bench/README.md](README.md)."
    )
    a("")
    a("## Machine and settings")
    a("")
    a(
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['mem']} RAM, Linux {m['kernel']}; "
        f"load average before the run: {m['loadavg']}"
    )
    a(f"- commit: `{m['commit']}` (branch `{m['branch']}`)")
    a(
        f"- load generator: {m['wrk']}, `-t{ctx['threads']} -c{ctx['connections']} -d{ctx['seconds']:g}s --latency`; "
        f"logins: bench/login.py (httpx, Python {m['python']}), {ctx['login_concurrency']} virtual users, "
        f"{ctx['seconds']:g} s per run"
    )
    a(
        f"- order: per endpoint, {ctx['rounds']} round(s) of {' / '.join(ctx['order'])} (A B A B), "
        f"after a {ctx['warmup']:g} s warm-up of each; everything on loopback, servers and load generator "
        "share the same cores"
    )
    for s in ctx["servers_info"]:
        a(f"- {s}")
    a(
        f"- argon2id parameters: m={ctx['argon2']['memory_cost']} KiB, t={ctx['argon2']['time_cost']}, "
        f"p={ctx['argon2']['parallelism']} — {ctx['argon2_source']}; the anchor verifies with the same parameters "
        "(npm `argon2`, on libuv's thread pool)"
    )
    a("")
    disturbed = [
        r
        for v in [
            *ctx["results"].values(),
            *(r for sc in ctx["scale"].values() for r in sc["results"].values()),
        ]
        for r in v
        if r.ok and r.other_cpu_share > OTHER_CPU_WARN
    ]
    if disturbed:
        measured = sum(1 for v in ctx["results"].values() for r in v if r.ok) + sum(
            1 for sc in ctx["scale"].values() for v in sc["results"].values() for r in v if r.ok
        )
        shares = sorted(r.other_cpu_share * 100 for r in disturbed)
        a(
            f"**{len(disturbed)} of {measured} runs shared the machine with other work**: something "
            f"else used more than {OTHER_CPU_WARN * 100:.0f}% of a core meanwhile (median "
            f"{statistics.median(shares):.0f}%, up to {shares[-1]:.0f}%; marked ⚠ in the tables). "
            "Their requests/s are low by up to that share; the CPU per request is less affected. "
            "Compare ratios within one round, and the CPU per request."
        )
        a("")
    a(
        "Cells: mean over the rounds of requests/s (± half the spread between rounds), latency p50/p99 "
        "(wrk's histogram; login: per whole login) and server CPU time per request (all the server's "
        "processes, from /proc: user + system). The CPU ratio holds better than req/s on a shared machine. "
        "Database CPU: PostgreSQL's backends serving the bench database, measured apart (not in the "
        "server CPU, not in the other CPU); SQLite runs inside the server's processes. "
        "Per worker process: req/s divided by the number of serving processes (the anchor is one). "
        "Ratio = ours/anchor (> 1.00: ours is faster). RSS: the largest VmRSS of one serving process during the runs."
    )
    a("")
    if ctx["notes"]:
        a("## Notes")
        a("")
        for n in ctx["notes"]:
            a(f"- {n}")
        a("")
    label = {s.name: s.label for s in ctx["servers"]}
    ours = [s for s in ctx["servers"] if s.ours]
    anchors = [s for s in ctx["servers"] if not s.ours]  # in memory; with PostgreSQL
    a("## Targets (issue 9)")
    a("")
    rows = targets(ctx)
    if rows:
        a("| target | server | measured | |")
        a("|---|---|---|---|")
        L.extend(rows)
    else:
        a(f"not measured: {ctx['ours_reason'] or 'no run of idp and the anchor'}")
    a("")
    why = why_not_met(ctx)
    if why:
        a("### Where a target is not met, and why")
        a("")
        for w in why:
            a(f"- {w}")
        a("")
    a("## Summary")
    a("")
    cols = ["endpoint", *(s.label for s in anchors), *(s.label for s in ours)]
    a("| " + " | ".join(cols) + " |")
    a("|" + "---|" * len(cols))
    for ep in ENDPOINTS:
        if ep.key not in ctx["results"]:
            continue
        res = ctx["results"][ep.key]
        digits, unit = (1, "logins/s") if ep.kind == "login" else (0, "/s")
        anc = summarize(res, "anchor")
        row = [ep.title]
        for other in anchors:
            sm = summarize(res, other.name)
            row.append(
                f"{fmt(sm.rps, digits)} {unit}, p99 {sm.p99_ms:.1f} ms" if sm else "not measured"
            )
        for s in ours:
            sm = summarize(res, s.name)
            if not sm:
                row.append("not measured")
                continue
            ratio = f" (**{sm.rps / anc.rps:.2f}x**)" if anc else ""
            row.append(f"{fmt(sm.rps, digits)} {unit}{ratio}, p99 {sm.p99_ms:.1f} ms")
        a("| " + " | ".join(row) + " |")
    if not ours:
        a("")
        a(f"**idp: not measured** — {ctx['ours_reason']}")
    a("")
    for ep in ENDPOINTS:
        if ep.key not in ctx["results"]:
            continue
        res = ctx["results"][ep.key]
        a(f"## {ep.title}")
        a("")
        a(f"{ep.what}.")
        a("")
        unit = "logins/s" if ep.kind == "login" else "req/s"
        digits = 1 if ep.kind == "login" else 0
        a(
            f"| server | {unit} | per worker process | p50 ms | p99 ms | server CPU/req | database CPU/req | "
            "ours/anchor | per process ours/anchor | RSS per serving process |"
        )
        a("|---|---|---|---|---|---|---|---|---|---|")
        anc = summarize(res, "anchor")
        for s in [*anchors, *ours]:
            sm = summarize(res, s.name)
            if not sm:
                a(f"| {s.label} | not measured | | | | | | | | |")
                continue
            sp = f" ±{sm.extra['spread'] * 50:.0f}%" if sm.extra["n"] > 1 else ""
            rss = serving_rss_kib(res, s, ctx["procnames"])
            ratio = f"**{sm.rps / anc.rps:.2f}x**" if anc and s.ours else ""
            per = f"**{sm.rps / s.workers / anc.rps:.2f}x**" if anc and s.ours else ""
            a(
                f"| {s.label} | {fmt(sm.rps, digits)}{sp} | {fmt(sm.rps / s.workers, digits)} | {sm.p50_ms:.2f} | "
                f"{sm.p99_ms:.2f} | {cpu_str(sm.server_cpu_us)} | "
                f"{cpu_str(sm.db_cpu_us) if s.database_name else '—'} | {ratio} | {per} | "
                f"{f'{rss / 1024:.0f} MiB' if rss else '—'} |"
            )
        a("")
        runs_table(a, res, ep, label)
        if ep.key == "refresh_token":
            a("")
            a(
                "Each refresh token is sent once: the Lua script keeps a queue seeded with "
                f"{ctx['refresh_pool']} refresh tokens minted through full logins, and every 200 response "
                "puts the new (rotated) refresh token back, so each connection runs a rotation chain."
            )
        if ep.key == "login":
            a("")
            a(
                "idp logs in a random one of its seeded accounts each time (the anchor has one account); "
                "every login starts with an empty cookie jar and asks for consent (`prompt=consent`)."
            )
        if ep.key == "password_login":
            a("")
            a(
                "idp logs in a random one of its seeded accounts each time, from an empty cookie jar; "
                "a login counts when the credentials are answered with a redirect (a wrong password "
                "shows the form again: an error)."
            )
        a("")
    a("## Memory (RSS) under load")
    a("")
    a(
        "Largest VmRSS seen per server process during the measured runs (sampled every 0.25 s). "
        "With IDP_WORKERS=1 the main process serves; with more, the worker processes serve and the main "
        "process supervises."
    )
    a("")
    a("| server | process | max RSS |")
    a("|---|---|---|")
    for s in ctx["servers"]:
        rss: dict[int, int] = {}
        for res in ctx["results"].values():
            for r in res:
                if r.server == s.name:
                    for pid, v in r.max_rss_kib.items():
                        rss[pid] = max(rss.get(pid, 0), v)
        for pid, v in sorted(rss.items()):
            a(f"| {s.label} | {ctx['procnames'].get(pid, pid)} | {v / 1024:.0f} MiB |")
    if not ours:
        a(f"| idp | — | not measured ({ctx['ours_reason']}) |")
    a("")
    a("## Password login vs the argon2id floor")
    a("")
    fl = ctx.get("floor")
    if fl:
        a(
            f"argon2-cffi {fl['argon2_cffi']} `PasswordHasher` with the parameters above, in the bench's "
            f"own process: one verify alone takes {fl['verify_ms']:.1f} ms and **{fl['verify_cpu_ms']:.1f} ms "
            f"CPU** (median of {fl['verifies_timed']} verifies, one thread; measured "
            f"{', '.join(f'{when} {v:.1f} ms' for when, v in fl['verify_cpu_ms_measured'])} CPU: "
            "the lower counts; "
            f"hash {fl['hash_ms']:.1f} ms); {fl['threads']} threads verifying "
            f"back to back (as many as the login runs' virtual users): **{fl['verify_per_s']:.1f} "
            f"verifies/s**, at {fl['concurrent_verify_cpu_ms']:.1f} ms CPU per verify (side by side, "
            "verifies slow each other down through the shared cache and memory). No password "
            "login can go faster on this machine. The target's floor is measured again right before "
            "each login run, for 3 s with as many verifies at once as that server hashes at once "
            "(idp: its argon2id threads, one per worker here; the anchor: one per core): this "
            "machine's speed drifts by a fifth within minutes, and two hashes at once cost each other "
            "several percent, so each run is set against a floor of its own moment and concurrency, "
            "and the rounds' ratios are averaged. The comparison with the quietest verify alone "
            "stays beside it."
        )
        a("")
        a(
            "Two views: throughput (logins/s against verifies/s; the login driver shares the cores, and an "
            "idp worker verifies in as many threads as its share of the cores allows, one per worker here, "
            "to bound the hashes' memory) and CPU (the server's CPU time per login, all its processes and "
            "threads, against the CPU time per verify: what the server spends on top of hashing). The "
            "target is the password login's CPU: at most +20% (issue 9). idp's CPU per login is also "
            "split by thread: its argon2id threads (named so for the operating system) against "
            "everything else its processes did: the hashing as it costs inside the server, beside the "
            "other requests' work, and what the service adds around it (also set against the verify "
            "alone). The anchor hashes on libuv's shared thread pool, which this cannot tell apart."
        )
        for key, what in (
            ("password_login", "Password login: the login page and the credentials (2 requests)"),
            (
                "login",
                "Full authorization-code login (authorize, login page, credentials, resume, consent "
                "page, consent, code exchange: 7 requests), for comparison",
            ),
        ):
            if key not in ctx["results"]:
                continue
            a("")
            a(f"{what}:")
            a("")
            a(
                "| server | logins/s | floor verifies/s | logins/s ÷ floor | server CPU per login | "
                "floor beside the runs: CPU per verify | server CPU over it (the target) | "
                "CPU per verify alone | server CPU over that | of it: hashing threads | "
                "of it: the rest | the rest against the verify alone |"
            )
            a("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for s in ctx["servers"]:
                sm = summarize(ctx["results"].get(key, []), s.name)
                if sm:
                    split = "— | — | —"
                    if s.ours and sm.hash_cpu_us:
                        rest = sm.server_cpu_us - sm.hash_cpu_us
                        split = (
                            f"{sm.hash_cpu_us / 1000:.1f} ms | {rest / 1000:.1f} ms | "
                            f"+{rest / 1000 / fl['verify_cpu_ms'] * 100:.0f}%"
                        )
                    a(
                        f"| {s.label} | {sm.rps:.1f} | {fl['verify_per_s']:.1f} | "
                        f"{sm.rps / fl['verify_per_s']:.2f} | {sm.server_cpu_us / 1000:.1f} ms | "
                        + (
                            f"{sm.extra['floor_cpu_ms']:.1f} ms ({floor_verifies(sm)}) | "
                            f"**{sm.extra['paired_over'] * 100:+.0f}%** | "
                            if "paired_over" in sm.extra
                            else "— | — | "
                        )
                        + f"{fl['verify_cpu_ms']:.1f} ms | {floor_over(sm, fl) * 100:+.0f}% | {split} |"
                    )
                else:
                    a(
                        f"| {s.label} | not measured | {fl['verify_per_s']:.1f} | — | — | — | — | "
                        f"{fl['verify_cpu_ms']:.1f} ms | — | — | — | — |"
                    )
    else:
        a(f"not measured: {ctx.get('floor_reason', 'skipped')}")
    a("")
    a(f"## Scale: {ctx['accounts']:,} and {ctx['scale_accounts']:,} accounts")
    a("")
    if not ctx["scale"]:
        a(f"Not done: {ctx['scale_reason']}")
        a("")
    for kind, sc in ctx["scale"].items():
        a(
            f"{kind}: the token and login runs with {ctx['accounts']:,} seeded accounts, measured again "
            "right before the seeding (each pair of runs minutes apart, not the whole run's length), "
            f"against the same servers after `idp bench seed --accounts {sc['accounts']:,}` added "
            f"{sc['seed']['added']:,} accounts in {sc['seed']['seconds']:.1f} s (the servers kept running; "
            "logins pick a random account among all of them)."
        )
        a("")
        a(
            "| endpoint | server | accounts | req/s | p50 ms | p99 ms | server CPU/req | database CPU/req |"
        )
        a("|---|---|---|---|---|---|---|---|")
        for key, big_res in sc["results"].items():
            for s in ours:
                if s.db is None or s.db.kind != kind:
                    continue
                for n, res in (
                    (ctx["accounts"], scale_base(ctx, sc, key)),
                    (sc["accounts"], big_res),
                ):
                    sm = summarize(res, s.name)
                    cells = (
                        f"{fmt(sm.rps, 1 if key == 'login' else 0)} | {sm.p50_ms:.2f} | {sm.p99_ms:.2f} | "
                        f"{cpu_str(sm.server_cpu_us)} | {cpu_str(sm.db_cpu_us) if s.database_name else '—'}"
                        if sm
                        else "not measured | | | |"
                    )
                    a(f"| {ep_title(key)} | {s.label} | {n:,} | {cells} |")
        a("")
        for key, big_res in sc["results"].items():
            ep = next(e for e in ENDPOINTS if e.key == key)
            a(f"### {kind}, {sc['accounts']:,} accounts: {ep.title}")
            a("")
            runs_table(a, big_res, ep, label)
            a("")
    path.write_text("\n".join(L))


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description="idp vs node-oidc-provider benchmark")
    ap.add_argument("--quick", action="store_true", help="a few minutes: 1 round, 3 s runs")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 5, quick 3)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, help="A B rounds per endpoint (default 2, quick 1)")
    ap.add_argument("--login-concurrency", type=int, default=4)
    ap.add_argument("--workers", default="1,2", help="idp worker counts to run (comma list)")
    ap.add_argument(
        "--databases",
        help="idp databases: sqlite,postgresql (default: sqlite, plus postgresql when "
        "IDP_BENCH_DATABASE_URL is set)",
    )
    ap.add_argument("--accounts", type=int, default=ACCOUNTS, help="seeded accounts, main run")
    ap.add_argument(
        "--scale-accounts",
        type=int,
        default=SCALE_ACCOUNTS,
        help="seeded accounts for the scale runs (0: skip them)",
    )
    ap.add_argument("--only", choices=["both", "anchor", "ours"], default="both")
    ap.add_argument("--endpoints", help="comma list of endpoint keys to run (default all)")
    ap.add_argument("--idp", help="path of the idp executable (default .venv/bin/idp)")
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    a = ap.parse_args()
    outdir = BENCH / "out" / time.strftime("%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True, exist_ok=True)
    o = Options(
        seconds=a.seconds or (3.0 if a.quick else 5.0),
        warmup=1.0 if a.quick else 2.0,
        rounds=a.rounds or (1 if a.quick else 2),
        connections=a.connections,
        threads=a.threads,
        login_concurrency=a.login_concurrency,
        outdir=outdir,
    )
    t_start = time.monotonic()

    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2

    pg_url = os.environ.get("IDP_BENCH_DATABASE_URL")
    kinds = (a.databases or ("sqlite,postgresql" if pg_url else "sqlite")).split(",")
    if "postgresql" in kinds and not pg_url:
        log("--databases postgresql needs IDP_BENCH_DATABASE_URL")
        return 2
    idp = find_idp(a.idp) if a.only != "anchor" else None
    argon2, argon2_source = service_argon2(idp)
    log(f"argon2id {argon2} ({argon2_source})")
    o.argon2 = argon2

    servers: list[Server] = []
    databases: list[Database] = []
    ours_reason = ""
    anchor = None
    try:
        if a.only != "ours":
            anchor = start_anchor(outdir, argon2)
            log(f"anchor up at {anchor.issuer} (pid {anchor.proc.pid})")
        if a.only == "anchor":
            ours_reason = "run with --only anchor"
        elif idp is None:
            ours_reason = (
                "the service is not installed here (no .venv/bin/idp, no `idp` on PATH, "
                "no IDP_BENCH_IDP)"
            )
        else:
            try:
                for kind in kinds:
                    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[kind]
                    db = prepare_ours(
                        idp, outdir, name, pg_url if kind == "postgresql" else None, a.accounts
                    )
                    databases.append(db)
                    for w in [int(x) for x in a.workers.split(",") if x]:
                        servers.append(start_ours(idp, db, w, outdir))
                        log(f"{servers[-1].label} up at {servers[-1].issuer}")
            except Exception as e:
                ours_reason = f"idp could not be started: {e}"
                log(ours_reason)
        if anchor:
            servers.append(anchor)
        if anchor and pg_url and "postgresql" in kinds:
            # Started after idp's databases were prepared (which empties the bench database).
            try:
                anchor_pg = start_anchor(outdir, argon2, pg_url)
                servers.append(anchor_pg)
                log(f"anchor (PostgreSQL adapter) up at {anchor_pg.issuer}")
            except RuntimeError as e:
                log(f"the anchor with its PostgreSQL adapter could not be started: {e}")

        servers_info = []
        for s in servers:
            if not s.ours:
                store = (
                    "the PostgreSQL adapter of bench/anchor/pg_adapter.js (the bench database's "
                    "`anchor` schema, a pool of 10 connections)"
                    if s.anchor_database
                    else "bundled in-memory adapter (no database; development-only, in the words "
                    "node-oidc-provider prints when it starts with it)"
                )
                servers_info.append(
                    f"{s.label}: bench/anchor/server.js: ES256 key generated at start, JWT (RFC 9068) "
                    "access tokens for client_credentials, opaque access tokens for userinfo (its "
                    "userinfo accepts only those), refresh tokens rotated on every use, introspection, "
                    f"ES256 ID tokens, signed cookies, {store}"
                )
            else:
                servers_info.append(
                    f"{s.label}: `idp serve`, IDP_WORKERS={s.workers}, {s.db.kind} "
                    f"({'a fresh file, WAL' if s.db.kind == 'SQLite' else 'IDP_BENCH_DATABASE_URL, emptied first'}), "
                    f"{a.accounts:,} seeded accounts (`idp bench seed`), IDP_ENV=development (plain-http "
                    "issuer on loopback), IDP_ID_TOKEN_SIGNING_ALG=ES256 (as the anchor), IDP_LOG_LEVEL=warning"
                )

        # a freshly started server (node's JIT, Python's imports and caches) settles first
        for s in servers:
            url = s.issuer + "/.well-known/openid-configuration"
            run_wrk(s, url, "get.lua", {}, o.warmup, a.connections, a.threads)

        floors: list[dict] = []
        floor, floor_reason = None, ""

        def measure_floor(when: str) -> None:
            nonlocal floor_reason
            try:
                measured = argon2_floor(argon2, 2.0 if a.quick else 4.0, a.login_concurrency)
                floors.append({**measured, "when": when})
                log(f"argon2id floor ({when}): {floors[-1]}")
            except Exception as e:
                floor_reason = f"{type(e).__name__}: {e}"

        # At the start, right before the logins and after the endpoints: the quieter one
        # counts; the one beside the logins shows how much the machine drifted meanwhile.
        measure_floor("at the start")
        results: dict[str, list[Result]] = {}
        procnames: dict[int, str] = {}
        ep_keys = set(a.endpoints.split(",")) if a.endpoints else None
        for ep in ENDPOINTS:
            if ep_keys and ep.key not in ep_keys:
                continue
            if ep.key == "login" or (ep.key == "password_login" and "login" not in results):
                measure_floor("right before the logins")
            results[ep.key] = run_endpoint(ep, servers, o, procnames)
        measure_floor("after the endpoints")
        if floors:
            floor = quieter_floor(floors)

        scale: dict[str, dict] = {}
        scale_reason = ""
        scale_eps = [
            ep
            for ep in ENDPOINTS
            if ep.key in ("client_credentials", "refresh_token", "login")
            and (not ep_keys or ep.key in ep_keys)
        ]
        if not databases:
            scale_reason = ours_reason or "idp did not run"
        elif a.scale_accounts <= a.accounts:
            scale_reason = f"--scale-accounts {a.scale_accounts} (not above --accounts)"
        elif not scale_eps:
            scale_reason = "no token or login endpoint selected"
        for db in databases if not scale_reason else []:
            mine = [s for s in servers if s.db is db]
            # The same runs at the main run's accounts right before the seeding, so that
            # each pair is minutes apart, not the whole run (this machine drifts).
            before = {ep.key: run_endpoint(ep, mine, o, procnames) for ep in scale_eps}
            seed_ours(idp, db, a.scale_accounts)
            use_new_secret(servers, db)
            scale[db.kind] = {
                "accounts": db.seed["accounts"],
                "seed": dict(db.seed),
                "before": before,
                "results": {ep.key: run_endpoint(ep, mine, o, procnames) for ep in scale_eps},
            }
        for other in servers:
            if not other.ours and other.proc.poll() is None:
                procnames.setdefault(other.proc.pid, proc_name(other.proc.pid))

        ctx = {
            "machine": machine(),
            "quick": a.quick,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "threads": a.threads,
            "connections": a.connections,
            "seconds": o.seconds,
            "rounds": o.rounds,
            "warmup": o.warmup,
            "login_concurrency": a.login_concurrency,
            "order": [s.name for s in servers],
            "servers": servers,
            "servers_info": servers_info,
            "results": results,
            "argon2": argon2,
            "argon2_source": argon2_source,
            "floor": floor,
            "floor_reason": floor_reason,
            "accounts": a.accounts,
            "scale_accounts": a.scale_accounts,
            "scale": scale,
            "scale_reason": scale_reason,
            "ours_reason": ours_reason,
            "procnames": procnames,
            "refresh_pool": a.connections * 3,
            "notes": [],
        }
        write_report(Path(a.out), ctx)
        raw = {
            "results": {k: [r.__dict__ for r in v] for k, v in results.items()},
            "scale": {
                k: {ek: [r.__dict__ for r in ev] for ek, ev in sc["results"].items()}
                for k, sc in scale.items()
            },
            "scale_before": {
                k: {ek: [r.__dict__ for r in ev] for ek, ev in sc["before"].items()}
                for k, sc in scale.items()
            },
        }
        (outdir / "results.json").write_text(json.dumps(raw, indent=1, default=str))
        log(f"wrote {a.out} in {time.monotonic() - t_start:.0f} s (raw data in {outdir})")
        return 0
    finally:
        for s in servers:
            s.stop()
        if anchor and anchor not in servers:
            anchor.stop()


if __name__ == "__main__":
    sys.exit(main())
