"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from litestar import Request, Response, get
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError


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


ROUTES = [healthz, readyz]
