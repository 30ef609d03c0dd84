"""Shared fixtures: a real database (SQLite file, or PostgreSQL from
IDP_TEST_DATABASE_URL), migrated once; the app over HTTP (litestar's test
client, or a real uvicorn on a free loopback port); a frozen clock per test, which the
test database and the apps built here go by (``clock.advance`` moves time, no sleeping).
`idp serve` in a process of its own keeps the system's time."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient
from sqlalchemy import delete, insert, select, text

from idp.app import Services, build_services, create_app
from idp.clock import Clock, FrozenClock
from idp.db.engine import Database
from idp.db.migrate import upgrade
from idp.db.models import AuditHead, Base, SigningKey
from idp.keys.store import KeyStore
from idp.settings import Settings
from idp.web.http_protocol import server_options

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


def _reset_postgres(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    db.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for this test session."""
    url = os.environ.get("IDP_TEST_DATABASE_URL")
    if url:
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'idp.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def _key_rows(database_url: str, keys_dir: Path) -> list[dict]:
    """Signing keys made once per session (RSA generation is slow); restored per test."""
    db = Database(database_url)
    KeyStore(keys_dir, "", db).ensure()
    with db.unit_of_work() as session:
        rows = [
            {c.name: getattr(row, c.name) for c in SigningKey.__table__.columns}
            for row in session.scalars(select(SigningKey))
        ]
    db.dispose()
    return rows


@pytest.fixture(scope="session")
def _clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
def clock(_clock: FrozenClock) -> FrozenClock:
    """This test's clock, stopped at the time the test starts: the test database's and that
    of the apps the fixtures build (pass it to others: ``create_app(settings, clock=clock)``)."""
    _clock.set(datetime.now(UTC))
    return _clock


@pytest.fixture(scope="session")
def _db(database_url: str, _clock: FrozenClock) -> Iterator[Database]:
    db = Database(database_url, clock=_clock)
    yield db
    db.dispose()


@pytest.fixture
def db(_db: Database, _key_rows: list[dict], clock: FrozenClock) -> Database:
    """The test database, emptied before each test (keys restored), on the test's clock."""
    with _db.unit_of_work() as session:
        if _db.dialect == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(delete(table))
        session.execute(insert(SigningKey), _key_rows)
        session.add(AuditHead(id=1, last_id=0, last_hash=b"\x00" * 32))
    return _db


def on_own_loop(coroutine: Any) -> Any:
    """Run ``coroutine`` on a fresh event loop in a thread of its own, as a worker's loop
    would be (the main thread may have a loop already: Playwright's synchronous API
    leaves one)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def together(calls: list[Any]) -> list[Any]:
    """Run the calls in threads released at the same moment; their results, in order.
    Concurrency tests send one burst this way, so the requests really overlap."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_settings(database_url: str, keys_dir: Path, **overrides) -> Settings:
    """Test settings; any field can be overridden."""
    values = {
        "issuer": "http://127.0.0.1:8000",
        "database_url": database_url,
        "keys_dir": keys_dir,
        "cache_poll_seconds": 1,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture
def settings(db: Database, keys_dir: Path) -> Settings:
    return make_settings(db.url, keys_dir)


@pytest.fixture
def services(settings: Settings, clock: FrozenClock) -> Iterator[Services]:
    services = build_services(settings, clock)
    yield services
    services.db.dispose()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The app in-process over HTTP (ASGI), base URL = issuer."""
    with TestClient(create_app(settings, services), base_url=settings.issuer) as test_client:
        yield test_client


class LiveServer:
    """A real uvicorn serving the app on a loopback port, in a thread, as `idp serve` does;
    the app goes by ``clock``."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.url = settings.issuer
        config = uvicorn.Config(
            create_app(settings, clock=clock),
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            lifespan="on",
            **server_options(settings),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_settings(db: Database, keys_dir: Path) -> Settings:
    port = free_port()
    return make_settings(db.url, keys_dir, issuer=f"http://127.0.0.1:{port}", port=port)


@pytest.fixture
def live_server(live_settings: Settings, clock: FrozenClock) -> Iterator[LiveServer]:
    """A real server on a free loopback port, on the test's clock; its URL is the issuer."""
    with LiveServer(live_settings, clock) as server:
        yield server


@pytest.fixture
def two_workers(db: Database, keys_dir: Path, tmp_path: Path):
    """Start `idp serve` with two worker processes on the test database (SQLite or
    PostgreSQL) and the test keys: ``two_workers(IDP_X="...")`` is a context manager giving
    its URL. Concurrency tests send their bursts there, as they would reach production."""
    from tests.test_cli import serve_env, serving

    @contextmanager
    def start(**env: str) -> Iterator[str]:
        settings = serve_env(
            tmp_path, IDP_WORKERS="2", IDP_DATABASE_URL=db.url, IDP_KEYS_DIR=str(keys_dir), **env
        )
        with serving(settings):
            yield settings["IDP_ISSUER"]

    return start
