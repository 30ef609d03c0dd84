"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from concurrent.futures import Future
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from litestar import Request, Response
from litestar.exceptions import NotFoundException

from idp import metrics as metrics_module
from idp.db import readiness
from idp.db.engine import Database
from idp.db.timeouts import unavailable
from idp.web.handlers import get

log = logging.getLogger("idp.web")


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


# Where a database keeps its probe still running (``Database.info``).
_PROBE = "readiness probe"


def _probe(database: Database, bound: int) -> Future[None]:
    """The database's readiness write, in a thread of its own; one at a time, so a database
    that does not answer holds one thread, however often it is asked."""
    running = database.info.get(_PROBE)
    if running is not None and not running.done():
        return running
    future: Future[None] = Future()

    def run() -> None:
        try:
            readiness.beat(database, bound)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    future.set_running_or_notify_cancel()  # a request that stops waiting cannot cancel it
    database.info[_PROBE] = future
    threading.Thread(target=run, name="idp-readyz", daemon=True).start()
    return future


@get("/readyz")
async def readyz(request: Request) -> Response[dict[str, str]]:
    """Ready to serve: the database took a write within IDP_READY_TIMEOUT_SECONDS and the
    signing keys are loaded."""
    services = request.app.state.services
    bound = services.settings.ready_timeout_seconds
    problems = {}
    try:
        await asyncio.wait_for(asyncio.wrap_future(_probe(services.db, bound)), bound)
    except TimeoutError:
        problems["database"] = f"no write within {bound} s"
        request.app.state.outage.refused(request.url.path, TimeoutError(problems["database"]))
    except Exception as exc:
        problems["database"] = "refused a write"
        if unavailable(exc):
            request.app.state.outage.refused(request.url.path, exc)
        else:
            log.exception("readiness: the database refused a write")
    else:
        request.app.state.outage.recovered()
    if not services.keys.loaded:
        problems["keys"] = "not loaded"
    if problems:
        return Response(
            {"status": "unavailable", **problems},
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    return Response({"status": "ok"}, headers={"Cache-Control": "no-store"})


@cache
def _version() -> str:
    try:
        return version("idp")
    except PackageNotFoundError:
        return "unknown"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@get("/metrics", sync_to_thread=True)
def metrics(request: Request) -> Response[str]:
    """Prometheus metrics of this node, for a scraper holding IDP_METRICS_TOKEN."""
    services = request.app.state.services
    expected = services.settings.metrics_token
    if not expected:
        raise NotFoundException()
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        _digest(presented.strip()), _digest(expected)
    ):
        return Response(
            "A bearer token (IDP_METRICS_TOKEN) is needed.\n",
            status_code=401,
            media_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
        )
    body = metrics_module.exposition(services.metrics, services.db, _version())
    return Response(
        body, media_type=metrics_module.CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )


ROUTES = [healthz, readyz, metrics]
