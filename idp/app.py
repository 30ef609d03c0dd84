"""Application factory: the one place where the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from litestar import Litestar, Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from idp import maintenance
from idp.accounts.authenticators import Keys as AuthenticatorKeys
from idp.accounts.passwords import common_passwords
from idp.assurance import Policy, load_policy
from idp.clock import SYSTEM, Clock
from idp.db.engine import Database
from idp.db.migrate import pending
from idp.keys.secret import CodeDigests, derive_key, load_secret_key
from idp.keys.secretbox import SecretBox
from idp.keys.store import KeyStore
from idp.mail.outbox import MailSender
from idp.metrics import ProcessMetrics
from idp.oidc import backchannel
from idp.oidc.clients import ClientRegistry
from idp.oidc.discovery import EncodedDocument, provider_metadata
from idp.oidc.server import Provider
from idp.settings import Settings
from idp.web import account, citizen, csrf, demo, errors, ops, pages, security
from idp.web.protocol import adapter as protocol_adapter
from idp.web.protocol import authorize, wellknown
from idp.web.protocol import endpoints as protocol
from idp.web.protocol.direct import App
from idp.web.rendering import STATIC, StaticFiles

log = logging.getLogger("idp")
BACKCHANNEL_POLL_SECONDS = 1


class StartupError(Exception):
    """The service cannot start; the message says what to do."""


@dataclass
class Services:
    """Process-wide objects built once at start-up and shared by every request."""

    settings: Settings
    db: Database
    keys: KeyStore
    discovery: EncodedDocument
    secret_box: SecretBox
    code_digests: CodeDigests
    assurance_policy: Policy
    clients: ClientRegistry
    oidc: Provider
    metrics: ProcessMetrics
    # Reloaders of in-process caches; each returns True when it reloaded.
    refreshers: list[Callable[[], bool]] = field(default_factory=list)
    _jwks: EncodedDocument | None = None
    _jwks_version: int = -1

    @property
    def authenticator_keys(self) -> AuthenticatorKeys:
        """What checking an authenticator's answer needs (idp.accounts.authenticators)."""
        return AuthenticatorKeys(self.secret_box, self.settings.issuer, self.code_digests)

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


def build_services(settings: Settings, clock: Clock = SYSTEM) -> Services:
    """Connect to the database, check it is migrated and load the keys; the service goes
    by ``clock`` (tests freeze one: idp.clock)."""
    db = Database.of(settings, background_checkpoints=True, clock=clock)
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
    secret = load_secret_key(settings)
    assurance_policy = load_policy(settings)
    clients = ClientRegistry(db)
    clients.load()
    services = Services(
        settings=settings,
        db=db,
        keys=keys,
        discovery=EncodedDocument(provider_metadata(settings, assurance_policy)),
        secret_box=SecretBox(derive_key(secret, "factor-secrets")),
        code_digests=CodeDigests(secret),
        assurance_policy=assurance_policy,
        clients=clients,
        oidc=Provider(
            settings,
            keys,
            clients,
            assurance_policy,
            derive_key(secret, "pairwise-subjects"),
            db,
            derive_key(secret, "refresh-successors"),
            protocol_adapter.PAGES,
        ),
        metrics=ProcessMetrics(settings.metrics_dir),
    )
    services.metrics.listen(db)
    # Whatever ends a login session, its clients are told (Back-Channel Logout 1.0).
    backchannel.listen(db, services.oidc)
    services.refreshers.append(keys.refresh_if_changed)
    services.refreshers.append(clients.refresh_if_changed)
    return services


@functools.cache
def _freeze_start_up() -> None:
    """Keep what start-up built out of the garbage collector's full passes (once a process).

    Modules, the app and its caches live as long as the process; a full collection
    walked them all every so often under load (about 100 ms on the benchmark machine,
    the p99 of a token endpoint).
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, services: Services | None = None, *, clock: Clock = SYSTEM
) -> Litestar:
    """The litestar application for ``settings``, on ``services`` if given, else on services
    built here going by ``clock``."""
    services = services or build_services(settings, clock)
    mailer = MailSender(services.db, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The password blocklist, loaded here rather than by the first registration, which
        # checks passwords on the event loop (and kept out of the collector's passes with
        # the rest of start-up).
        common_passwords()
        _freeze_start_up()
        tasks = [
            asyncio.create_task(_poll(services)),
            asyncio.create_task(mailer.run()),
            asyncio.create_task(_deliver_logouts(services)),
            asyncio.create_task(_maintenance(services)),
        ]
        if services.db.dialect == "sqlite":
            tasks.append(asyncio.create_task(_checkpoints(services.db)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(OSError):
                services.metrics.publish()  # a worker's last counts outlive it
            if services.db.awaited is not None:
                await services.db.awaited.aclose()
            services.db.dispose()

    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        file_system=StaticFiles(),
        cache_control=CacheControlHeader(max_age=86400, public=True),
        include_in_schema=False,
        opt={"csrf": False},
    )
    # One router for every handler: litestar 2.25 re-registers (and wraps in a thread a
    # second time) a sync handler whose path gets another method registered after it,
    # which breaks GET+POST pairs with sync_to_thread=True when listed flat.
    routes = Router(
        path="/",
        route_handlers=[
            *wellknown.ROUTES,
            *ops.ROUTES,
            *pages.ROUTES,
            *citizen.ROUTES,
            *account.ROUTES,
            *protocol.ROUTES,
            *authorize.ROUTES,
            # The demo portal app exists only in development.
            *(demo.ROUTES if settings.development else []),
            static,
        ],
    )
    app = App(
        # Also registered with litestar (through ``routes``), which serves other forms of
        # their paths; these exact paths are dispatched before its router
        # (idp/web/protocol/direct.py).
        direct=[*wellknown.ROUTES, *protocol.ROUTES],
        route_handlers=[routes],
        lifespan=[lifespan],
        guards=[csrf.guard],
        before_send=[security.headers_hook(settings.issuer)],
        exception_handlers=errors.HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        openapi_config=None,
        # Logging is idp.logs' (JSON on stderr, configured by `idp serve`); litestar's
        # default would replace the root logger's handler with its own text format (and
        # start a queue thread per app). Unexpected errors are logged by idp.web.errors.
        logging_config=None,
    )
    app.state.services = services
    app.state.csrf_key = derive_key(load_secret_key(settings), "csrf")
    app.state.mailer = mailer
    app.state.outage = errors.Outage()
    return app


async def _poll(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.cache_poll_seconds)
        try:
            await asyncio.to_thread(services.refresh)
        except Exception:
            log.exception("refreshing caches failed; keeping the loaded ones")
        try:
            await asyncio.to_thread(services.metrics.publish)
        except OSError as exc:
            log.warning("cannot write this worker's metrics to IDP_METRICS_DIR: %s", exc)


# How often a server looks at the size of SQLite's WAL (Database.checkpoint).
CHECKPOINT_POLL_SECONDS = 0.25


async def _checkpoints(db: Database) -> None:
    """SQLite: checkpoint the WAL in a thread, never inside a request's commit."""
    while True:
        await asyncio.sleep(CHECKPOINT_POLL_SECONDS)
        try:
            await asyncio.to_thread(db.checkpoint)
        except Exception:
            log.exception("checkpointing the SQLite WAL failed; retrying")


async def _deliver_logouts(services: Services) -> None:
    """Send due back-channel logout tokens from the outbox, every second."""
    attempts = services.settings.backchannel_logout_attempts
    while True:
        await asyncio.sleep(BACKCHANNEL_POLL_SECONDS)
        try:
            await asyncio.to_thread(backchannel.deliver_due, services.db, attempts)
        except Exception:
            log.exception("back-channel logout delivery failed; retrying later")


async def _maintenance(services: Services) -> None:
    """Delete expired rows when it is due, one worker of one node at a time (idp.maintenance)."""
    while True:
        await asyncio.sleep(maintenance.poll_seconds(services.settings))
        try:
            purged = await asyncio.to_thread(maintenance.run_if_due, services.db, services.settings)
        except Exception:
            log.exception("maintenance run failed; retrying later")
            continue
        if purged is not None and any(purged.values()):
            log.info(
                "maintenance: purged %s",
                ", ".join(f"{count} {name}" for name, count in purged.items() if count),
            )


def app_from_env() -> Litestar:
    """Factory for ASGI servers: ``idp serve`` runs it in each worker process; run by hand,
    ``uvicorn --factory idp.app:app_from_env --http idp.web.http_protocol:HttpProtocol``
    serves as ``idp serve`` does (idp/web/http_protocol.py)."""
    return create_app(Settings.from_env())
