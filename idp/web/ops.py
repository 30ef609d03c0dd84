"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from litestar import Request, Response
from litestar.exceptions import NotFoundException
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp import metrics as metrics_module
from idp.web.handlers import get


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True)
def readyz(request: Request) -> Response[dict[str, str]]:
    """Ready to serve: the database answers and the signing keys are loaded."""
    services = request.app.state.services
    problems = {}
    try:
        with services.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        problems["database"] = "unreachable"
    if not services.keys.loaded:
        problems["keys"] = "not loaded"
    if problems:
        return Response({"status": "unavailable", **problems}, status_code=503)
    return Response({"status": "ok"})


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
