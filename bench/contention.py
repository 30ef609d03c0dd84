"""Refresh-token throughput alone and with registrations beside it, back to back.

Issue 19 saw the refresh grant on SQLite with two workers fall from 1,363 to
164 req/s when 10 registrations/s ran beside it. On a shared machine absolute
rates drift, so this runs the two cases in alternation (alone, beside, alone,
beside, ...) against one server and reports each pair:

  python bench/contention.py                       # SQLite, 2 workers, 4 rounds of 10 s
  python bench/contention.py --rate 10 --rounds 6 --seconds 8
  IDP_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/idp_bench \
      python bench/contention.py --database postgresql

The refresh load is run.py's (wrk + wrk/refresh.lua, every token used once, a
fresh pool minted by full logins before each run); the registrations are
bench/register.py's, at a fixed rate from 4 browsers. Per run: refresh req/s,
p50/p99, errors, the server's CPU per refresh, and the registrations' count,
p50/p99 and misses. Raw results go to bench/out/contention-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as bench  # noqa: E402
from register import Registrations  # noqa: E402


def refresh_pool(server: bench.Server, o: argparse.Namespace, outdir: Path) -> dict:
    """A fresh pool of refresh tokens (full logins) and wrk's arguments for it."""
    meta = httpx.get(server.issuer + "/.well-known/openid-configuration").json()
    return bench.prep_refresh(
        server, meta, {"outdir": str(outdir), "refresh_pool": o.connections * 3}
    )


async def measured(
    server: bench.Server, o: argparse.Namespace, outdir: Path, rate: float, seconds: float
) -> tuple[bench.Result, dict | None]:
    """A refresh run of ``seconds`` with registrations at ``rate``/s beside it (0: alone)."""
    prep = await asyncio.to_thread(refresh_pool, server, o, outdir)
    wrk = asyncio.to_thread(
        bench.run_wrk,
        server,
        prep["url"],
        prep["script"],
        prep["env"],
        seconds,
        o.connections,
        1,
    )
    if not rate:
        return await wrk, None
    res, tally = await asyncio.gather(wrk, Registrations(server.issuer, rate).run(seconds))
    return res, tally.summary(seconds)


async def registrations_alone(server: bench.Server, rate: float, seconds: float) -> dict:
    """Registrations at ``rate``/s with nothing beside them: the server's CPU per
    registration (all its processes), its argon2id threads' share of it and PostgreSQL's
    CPU beside it."""
    with bench.Sampler(server.proc.pid, database=server.database_name) as s:
        tally = await Registrations(server.issuer, rate).run(seconds)
    summary = tally.summary(seconds)
    done = max(1, tally.done)
    summary.update(
        cpu_ms_per_registration=s.cpu / done * 1000,
        hash_cpu_ms_per_registration=s.hash_cpu / done * 1000,
        database_cpu_ms_per_registration=s.db_cpu / done * 1000,
        server_cores=s.cpu / s.wall,
        other_cpu_share=max(0.0, (s.busy - s.cpu - s.db_cpu) / s.wall),
    )
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10.0, help="registrations per second beside")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--idp", help="path of the idp executable (default .venv/bin/idp)")
    o = ap.parse_args()
    idp = bench.find_idp(o.idp)
    if idp is None:
        bench.log("no idp executable: make .venv/.installed")
        return 2
    outdir = BENCH / "out" / f"contention-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True, exist_ok=True)
    url = None
    if o.database == "postgresql":
        url = os.environ.get("IDP_BENCH_DATABASE_URL")
        if not url:
            bench.log("--database postgresql needs IDP_BENCH_DATABASE_URL")
            return 2
    kind = "SQLite" if o.database == "sqlite" else "PostgreSQL"
    db = bench.prepare_ours(idp, outdir, kind, url, o.accounts)
    db.env["IDP_MAIL_DIR"] = str(outdir / "mail")
    server = bench.start_ours(idp, db, o.workers, outdir)
    bench.log(f"{server.label} up at {server.issuer}")
    rows = []
    try:
        asyncio.run(measured(server, o, outdir, 0.0, 2.0))  # warm-up, not recorded
        regs = asyncio.run(registrations_alone(server, o.rate, o.seconds))
        bench.log(
            f"registrations alone: {regs['registrations']} ({regs['per_s']:.1f}/s), "
            f"server CPU {regs['cpu_ms_per_registration']:.1f} ms per registration, of which "
            f"argon2id threads {regs['hash_cpu_ms_per_registration']:.1f} ms, + database "
            f"{regs['database_cpu_ms_per_registration']:.1f} ms; "
            f"{regs['server_cores']:.2f} cores; p50 {regs['p50_ms'] or 0:.0f} ms "
            f"p99 {regs['p99_ms'] or 0:.0f} ms"
        )
        reg_cpu = (
            regs["cpu_ms_per_registration"] + regs["database_cpu_ms_per_registration"]
        ) / 1000
        for rnd in range(1, o.rounds + 1):
            for rate in (0.0, o.rate):
                res, reg = asyncio.run(measured(server, o, outdir, rate, o.seconds))
                row = {
                    "round": rnd,
                    "registrations_per_s": rate,
                    "refresh_per_s": res.rps,
                    "p50_ms": res.p50_ms,
                    "p99_ms": res.p99_ms,
                    "errors": res.errors,
                    "cpu_us_per_refresh": res.server_cpu_us,
                    "database_cpu_us_per_refresh": res.db_cpu_us,
                    # the server's (and PostgreSQL's) CPU during the run, registrations included
                    "cores": res.rps * (res.server_cpu_us + res.db_cpu_us) / 1e6,
                    "other_cpu_share": res.other_cpu_share,
                    "ok": res.ok,
                    "reason": res.reason,
                    "registrations": reg,
                }
                if reg and rows:
                    # What the refreshes would have reached with the CPU the run had, less what
                    # the registrations cost alone, at the CPU per refresh of the run before.
                    before = rows[-1]
                    per_refresh = (
                        before["cpu_us_per_refresh"] + before["database_cpu_us_per_refresh"]
                    ) / 1e6
                    row["cpu_bound_refresh_per_s"] = (
                        max(0.0, row["cores"] - reg["per_s"] * reg_cpu) / per_refresh
                    )
                rows.append(row)
                bench.log(
                    f"round {rnd} {'beside' if rate else 'alone '} {res.rps:8.1f} refresh/s "
                    f"p50 {res.p50_ms:6.1f} ms p99 {res.p99_ms:7.1f} ms errors {res.errors} "
                    f"CPU/refresh {res.server_cpu_us + res.db_cpu_us:5.0f} µs, "
                    f"{row['cores']:.2f} cores, other CPU {res.other_cpu_share:.2f}"
                    + (
                        f" | registrations {reg['registrations']} ({reg['per_s']:.1f}/s) "
                        f"p50 {reg['p50_ms'] or 0:.0f} ms p99 {reg['p99_ms'] or 0:.0f} ms "
                        f"errors {reg['errors']} missed {reg['missed']}; "
                        f"CPU-bound estimate {row.get('cpu_bound_refresh_per_s', 0):.0f} refresh/s"
                        if reg
                        else ""
                    )
                )
    finally:
        server.stop()
    (outdir / "contention.json").write_text(
        json.dumps({"options": vars(o), "registrations_alone": regs, "runs": rows}, indent=1)
    )
    alone = [r["refresh_per_s"] for r in rows if not r["registrations_per_s"]]
    with_reg = [r["refresh_per_s"] for r in rows if r["registrations_per_s"]]
    bench.log(
        f"refresh/s alone {sum(alone) / len(alone):.0f}, beside {o.rate:g} registrations/s "
        f"{sum(with_reg) / len(with_reg):.0f} (ratio {sum(with_reg) / sum(alone):.2f}); "
        f"raw: {outdir / 'contention.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
