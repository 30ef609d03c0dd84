"""Application factory: the one place where the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from litestar import Litestar

from idp.db.engine import Database
from idp.db.migrate import pending
from idp.keys.store import KeyStore
from idp.oidc.discovery import EncodedDocument, provider_metadata
from idp.settings import Settings
from idp.web import ops, wellknown

log = logging.getLogger("idp")


class StartupError(Exception):
    """The service cannot start; the message says what to do."""


@dataclass
class Services:
    """Process-wide objects built once at start-up and shared by every request."""

    settings: Settings
    db: Database
    keys: KeyStore
    discovery: EncodedDocument
    # Reloaders of in-process caches; each returns True when it reloaded.
    refreshers: list[Callable[[], bool]] = field(default_factory=list)
    _jwks: EncodedDocument | None = None
    _jwks_version: int = -1

    def jwks_document(self) -> EncodedDocument:
        """The JWKS, re-encoded only when the keys changed."""
        if self._jwks is None or self._jwks_version != self.keys.version:
            self._jwks = EncodedDocument(self.keys.jwks)
            self._jwks_version = self.keys.version
        return self._jwks

    def refresh(self) -> None:
        """Pick up changes other processes made (keys rotated, clients edited)."""
        for refresher in self.refreshers:
            refresher()


def build_services(settings: Settings) -> Services:
    """Connect to the database, check it is migrated and load the keys."""
    db = Database(settings.database_url)
    try:
        if pending(db.engine):
            raise StartupError(
                "the database is not migrated: run `idp db upgrade` (`make run` does it for you)"
            )
        keys = KeyStore(settings.keys_dir, settings.keys_passphrase, db)
        keys.load()
        if not keys.loaded:
            raise StartupError(
                "no signing keys: run `idp keys ensure` (`make run` does it for you)"
            )
    except Exception:
        db.dispose()
        raise
    services = Services(
        settings=settings,
        db=db,
        keys=keys,
        discovery=EncodedDocument(provider_metadata(settings)),
    )
    services.refreshers.append(keys.refresh_if_changed)
    return services


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    """The litestar application for ``settings``."""
    services = services or build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        poller = asyncio.create_task(_poll(services))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            services.db.dispose()

    app = Litestar(
        route_handlers=[*wellknown.ROUTES, *ops.ROUTES],
        lifespan=[lifespan],
        debug=False,
        openapi_config=None,
    )
    app.state.services = services
    return app


async def _poll(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.cache_poll_seconds)
        try:
            await asyncio.to_thread(services.refresh)
        except Exception:
            log.exception("refreshing caches failed; keeping the loaded ones")


def app_from_env() -> Litestar:
    """Factory for ASGI servers (``uvicorn --factory idp.app:app_from_env``)."""
    return create_app(Settings.from_env())
