"""The ``idp`` command line: serve, migrate, manage keys (and, in their modules, more)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from idp.clock import SYSTEM, Clock
from idp.db.engine import Database
from idp.keys.store import ALGORITHMS, KeyStore, KeyStoreError, NotPublishedLongEnough
from idp.oidc.clients import (
    AUTH_METHODS,
    GRANT_TYPES,
    PUBLIC_METHOD,
    SCOPES,
    SECRET_METHODS,
    SIGNING_ALGS,
    SUBJECT_TYPES,
    ClientConfigurationError,
    add_client,
    describe,
    find_client,
    list_clients,
    remove_client,
    update_client,
)
from idp.settings import Settings, SettingsError

CONFIG_ERROR = 2
# A kid is a JWK thumbprint (base64url): one in 64 begins with "-", which is still the kid.
# So may a client_id registered before ids were letters and digits only.
AN_ID_MAY_BEGIN_WITH_A_DASH = {"ignore_unknown_options": True}


def fail(message: str, status: int = 1) -> None:
    """Print one line to stderr and exit."""
    click.echo(f"idp: {message}", err=True)
    sys.exit(status)


def with_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """Read the settings first; a bad value or an unreachable database is one line, not a trace."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            settings = Settings.from_env()
        except SettingsError as exc:
            fail(str(exc), CONFIG_ERROR)
        try:
            return command(settings, *args, **kwargs)
        except OperationalError as exc:
            fail(f"cannot use the database ({settings.database_url}): {exc.orig}", CONFIG_ERROR)
        except SQLAlchemyError as exc:
            fail(f"database error: {exc.__class__.__name__}: {exc}")

    return wrapper


def _clock() -> Clock:
    """The clock a command goes by: the system's, unless it was invoked with one as click's
    context object (tests move time so: ``CliRunner().invoke(main, args, obj=clock)``)."""
    given = click.get_current_context().obj
    return given if given is not None else SYSTEM


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print ``data`` as one JSON object with --json, else the human ``text``."""
    click.echo(json.dumps(data, default=str) if as_json else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """idp: citizen identity service and OpenID Connect provider.

    Configuration comes from IDP_* environment variables (see README.md).
    """


@main.command()
@click.option(
    "--migrate/--no-migrate", default=False, help="Apply migrations and create keys first."
)
@with_settings
def serve(settings: Settings, migrate: bool) -> None:
    """Serve HTTP on IDP_HOST:IDP_PORT with IDP_WORKERS processes."""
    from idp.accounts.passwords import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread exists, for this process and the workers

    import uvicorn

    from idp import logs
    from idp.app import StartupError, build_services, create_app
    from idp.db.migrate import upgrade
    from idp.metrics import run_metrics_dir
    from idp.web.http_protocol import server_options
    from idp.web.workers import run_workers

    log_config = logs.configure(settings.log_level)

    if migrate:
        upgrade(settings.database_url)
        db = Database.of(settings)
        try:
            KeyStore(settings.keys_dir, settings.keys_passphrase, db).ensure()
        finally:
            db.dispose()
    if settings.metrics_dir is None:
        # Where this node's workers share their counts (idp/metrics.py).
        settings = dataclasses.replace(settings, metrics_dir=run_metrics_dir(settings.port))
        os.environ["IDP_METRICS_DIR"] = str(settings.metrics_dir)
    try:
        services = build_services(settings)
    except (StartupError, KeyStoreError) as exc:
        fail(str(exc), CONFIG_ERROR)
    if settings.development:
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    click.echo(f"idp: issuer {settings.issuer}")
    click.echo(f"idp: discovery {settings.issuer}/.well-known/openid-configuration")
    if not settings.development and not settings.forwarded_allow_ips:
        click.echo(
            "idp: IDP_FORWARDED_ALLOW_IPS is empty: no proxy is trusted, so every request "
            "counts as plain http from the proxy's address; name the TLS proxy there",
            err=True,
        )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config,
        **server_options(settings),
    }
    if settings.workers > 1:
        # Each worker process builds its own services from the environment.
        services.db.dispose()
        config = uvicorn.Config(
            "idp.app:app_from_env", factory=True, workers=settings.workers, **options
        )
        try:
            run_workers(config)
        except OSError as exc:  # the address: in use, or not this machine's
            fail(f"cannot listen on {settings.host}:{settings.port}: {exc}", 1)
        except KeyboardInterrupt:
            pass
    else:
        uvicorn.run(create_app(settings, services), **options)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@with_settings
def db_upgrade(settings: Settings) -> None:
    """Apply every pending migration."""
    from idp.db.migrate import upgrade

    upgrade(settings.database_url)
    click.echo("idp: database is up to date")


@main.group()
def keys() -> None:
    """Signing keys: list, create, rotate, retire."""


def _store(settings: Settings) -> KeyStore:
    return KeyStore(
        settings.keys_dir, settings.keys_passphrase, Database.of(settings, clock=_clock())
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def keys_list(settings: Settings, as_json: bool) -> None:
    """Show every key with its algorithm and state."""
    rows = _store(settings).rows()
    data = {
        "keys": [
            {
                "kid": r.kid,
                "alg": r.alg,
                "state": r.state,
                "created_at": r.created_at.isoformat(),
                "activated_at": r.activated_at and r.activated_at.isoformat(),
                "retired_at": r.retired_at and r.retired_at.isoformat(),
            }
            for r in rows
        ]
    }
    lines = [
        f"{r.kid}  {r.alg:6}  {r.state:8}  created {r.created_at:%Y-%m-%d %H:%M}" for r in rows
    ]
    emit(as_json, data, "\n".join(lines) or "no keys: run `idp keys ensure`")


@keys.command("ensure")
@with_settings
def keys_ensure(settings: Settings) -> None:
    """Create an active and a next key for each algorithm that lacks one."""
    created = _store(settings).ensure()
    click.echo(f"idp: created {len(created)} key(s)" if created else "idp: keys are in place")


@keys.command("rotate")
@click.option("--alg", type=click.Choice(ALGORITHMS), help="Only this algorithm (default: all).")
@click.option(
    "--force",
    is_flag=True,
    help="Rotate even if the next key is newer than the JWKS cache lifetime (emergencies: "
    "relying parties that cache the key set reject the new key's tokens for a while).",
)
@with_settings
def keys_rotate(settings: Settings, alg: str | None, force: bool) -> None:
    """Next key becomes active, active becomes retired (still published), a new next is made.

    Refused until the next key has been published as long as relying parties may cache
    /jwks.json (300 s), unless --force."""
    try:
        activated = _store(settings).rotate(
            alg, force=force, poll_seconds=settings.cache_poll_seconds
        )
    except NotPublishedLongEnough as exc:
        fail(f"{exc}, or with --force in an emergency")
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo("idp: now active: " + ", ".join(activated))


@keys.command("retire", context_settings=AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("kid")
@with_settings
def keys_retire(settings: Settings, kid: str) -> None:
    """Take KID out of use: an active or next key is retired (its algorithm rotates past it);
    a retired key is removed from the JWKS and its file deleted."""
    try:
        state = _store(settings).retire(kid)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(f"idp: {kid} is now {state}")


# -- clients ------------------------------------------------------------------------------


@main.group()
def clients() -> None:
    """Relying parties (portal apps): add, list, show, update, remove."""


def _jwks(value: str | None) -> dict[str, Any] | None:
    """A JWKS given inline as JSON or as a file name."""
    if value is None:
        return None
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        fail("--jwks must be a JSON key set or a file holding one")
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        fail('--jwks must be a JSON object with a "keys" list')
    return data


def registration_options(adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The registration options shared by `clients add` and `clients update`."""
    multiple = {"multiple": True}
    options = [
        click.option("--name", required=adding, help="Name shown to citizens on the consent page."),
        click.option(
            "--redirect-uri", "redirect_uris", **multiple, help="Exact redirect URI (repeatable)."
        ),
        click.option(
            "--post-logout-redirect-uri",
            "post_logout_redirect_uris",
            **multiple,
            help="Where RP-initiated logout may return to (repeatable).",
        ),
        click.option(
            "--scope",
            "scopes",
            **multiple,
            type=click.Choice(SCOPES),
            help="Allowed scope (repeatable; default openid, profile, email).",
        ),
        click.option(
            "--grant-type",
            "grant_types",
            **multiple,
            type=click.Choice(GRANT_TYPES),
            help="Allowed grant type (repeatable; default authorization_code, refresh_token).",
        ),
        click.option(
            "--auth-method",
            type=click.Choice(AUTH_METHODS),
            help="Token endpoint authentication (default client_secret_basic; --public: none).",
        ),
        click.option("--jwks", help="private_key_jwt: the client's public JWKS (JSON or file)."),
        click.option("--jwks-uri", help="private_key_jwt: URL of the client's public JWKS."),
        click.option(
            "--first-party/--third-party",
            default=None,
            help="A city app: no consent page (default third party).",
        ),
        click.option(
            "--subject-type", type=click.Choice(SUBJECT_TYPES), help="public (default) or pairwise."
        ),
        click.option("--sector-identifier", help="Pairwise sector (default: the redirect host)."),
        click.option("--default-acr", help="acr asked for when a request names none."),
        click.option("--minimum-acr", help="acr every login for this client must reach."),
        click.option("--backchannel-logout-uri", help="Back-Channel Logout 1.0 endpoint."),
        click.option(
            "--id-token-alg",
            type=click.Choice(SIGNING_ALGS),
            help="ID token algorithm (default IDP_ID_TOKEN_SIGNING_ALG).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    """Registration fields from the options that were given.

    click passes a repeatable option that was not given as an empty tuple (whatever its
    default), and given, it has at least one value: an empty tuple means "not given".
    """
    mapping = {
        "id_token_alg": "id_token_signed_response_alg",
        "auth_method": "token_endpoint_auth_method",
    }
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == ():
            continue
        if isinstance(value, tuple):
            value = list(value)
        if name == "jwks":
            value = _jwks(value)
        fields[mapping.get(name, name)] = value
    return fields


def _print_client(as_json: bool, row: Any, secret: str | None) -> None:
    data = describe(row)
    if secret is not None:
        data["client_secret"] = secret
    lines = [f"client_id: {row.client_id}", f"name: {row.name}"]
    lines.append(f"auth method: {row.token_endpoint_auth_method}")
    lines.append(f"redirect URIs: {' '.join(row.redirect_uris) or '-'}")
    if secret is not None:
        lines.append(f"client_secret: {secret}")
        lines.append(
            "Keep the secret now: it is stored only as a digest and cannot be shown again."
        )
    emit(as_json, data, "\n".join(lines))


@clients.command("add")
@click.option("--client-id", help="Choose the client_id (default: random).")
@click.option("--public", is_flag=True, help="A public client: no secret, PKCE (auth method none).")
@registration_options(adding=True)
@with_settings
def clients_add(settings: Settings, public: bool, as_json: bool, **values: Any) -> None:
    """Register a client; a confidential client's secret is shown once."""
    fields = _fields(values)
    method = PUBLIC_METHOD if public else fields.get("token_endpoint_auth_method")
    fields["token_endpoint_auth_method"] = method or SECRET_METHODS[0]
    fields["scopes"] = fields.get("scopes") or ["openid", "profile", "email"]
    fields["grant_types"] = fields.get("grant_types") or ["authorization_code", "refresh_token"]
    fields.setdefault("id_token_signed_response_alg", settings.id_token_signing_alg)
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            row, secret = add_client(session, actor="cli", **fields)
    except ClientConfigurationError as exc:
        fail(str(exc))
    finally:
        db.dispose()
    _print_client(as_json, row, secret)


@clients.command("update", context_settings=AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("client_id")
@click.option("--new-secret", is_flag=True, help="Issue a new secret (the old one stops working).")
@registration_options(adding=False)
@with_settings
def clients_update(
    settings: Settings, client_id: str, new_secret: bool, as_json: bool, **values: Any
) -> None:
    """Change a client's registration; options not given stay as they are."""
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            row, secret = update_client(
                session, client_id, new_secret=new_secret, actor="cli", **_fields(values)
            )
    except ClientConfigurationError as exc:
        fail(str(exc))
    finally:
        db.dispose()
    _print_client(as_json, row, secret)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def clients_list(settings: Settings, as_json: bool) -> None:
    """Every registered client."""
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            rows = list_clients(session)
    finally:
        db.dispose()
    lines = [f"{r.client_id}  {r.token_endpoint_auth_method:19}  {r.name}" for r in rows]
    emit(as_json, {"clients": [describe(r) for r in rows]}, "\n".join(lines) or "no clients")


@clients.command("show", context_settings=AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def clients_show(settings: Settings, client_id: str, as_json: bool) -> None:
    """One client's registration (never its secret)."""
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            data = describe(find_client(session, client_id))
    except ClientConfigurationError as exc:
        fail(str(exc))
    finally:
        db.dispose()
    emit(as_json, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


@clients.command("remove", context_settings=AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("client_id")
@with_settings
def clients_remove(settings: Settings, client_id: str) -> None:
    """Delete a client with its codes, grants, tokens and consents."""
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            remove_client(session, client_id, actor="cli")
    except ClientConfigurationError as exc:
        fail(str(exc))
    finally:
        db.dispose()
    click.echo(f"idp: removed client {client_id}")


@main.group()
def users() -> None:
    """Citizen accounts (for tests and demos)."""


@users.command("create")
@click.option("--email", required=True, help="Login email address.")
@click.option("--password", required=True, help="Password (the registration rules apply).")
@click.option("--verified", is_flag=True, help="Mark the email as verified (proofing level low).")
@click.option("--json", "as_json", is_flag=True, help="Print the account as one JSON object.")
@with_settings
def users_create(
    settings: Settings, email: str, password: str, verified: bool, as_json: bool
) -> None:
    """Create a guest account without sending mail."""
    from idp.accounts.errors import AccountError, FormInvalid
    from idp.accounts.registration import create_account
    from idp.web.i18n import translate

    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            account = create_account(
                session, settings, email=email, password=password, verified=verified
            )
    except FormInvalid as exc:
        fail("; ".join(translate("en", e.key, **e.params) for e in exc.errors))
    except AccountError as exc:
        fail(translate("en", exc.key, **exc.params))
    finally:
        db.dispose()
    data = {
        "id": account.id,
        "subject": account.subject,
        "email": account.email,
        "email_verified": account.email_verified_at is not None,
        "proofing_level": account.proofing_level,
        "created_at": account.created_at.isoformat(),
    }
    emit(as_json, data, f"idp: created account {account.email} (sub {account.subject})")


@main.group()
def mail() -> None:
    """The outgoing mail queue."""


@mail.command("send-pending")
@with_settings
def mail_send_pending(settings: Settings) -> None:
    """Deliver every pending mail now, ignoring retry waits (e.g. after fixing SMTP)."""
    from idp.mail.outbox import pending_count, send_pending

    db = Database.of(settings, clock=_clock())
    try:
        sent = send_pending(db, settings, ignore_backoff=True)
        left = pending_count(db)
    finally:
        db.dispose()
    click.echo(f"idp: sent {sent} mail(s), {left} still pending")
    if left:
        sys.exit(1)


@main.group()
def audit() -> None:
    """The hash-chained audit trail."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def audit_verify(settings: Settings, as_json: bool) -> None:
    """Check the chain from its first event to its head; status 1 if an event does not fit."""
    from idp.audit.events import verify

    db = Database.of(settings)
    try:
        with db.unit_of_work() as session:
            broken_at = verify(session)
    finally:
        db.dispose()
    if broken_at is not None:
        if as_json:
            emit(True, {"verified": False, "broken_at": broken_at}, "")
            sys.exit(1)
        fail(f"the audit trail does not verify: event {broken_at} does not fit")
    emit(as_json, {"verified": True, "broken_at": None}, "idp: the audit trail verifies")


@main.group()
def maintenance() -> None:
    """Housekeeping (the server also does it every IDP_MAINTENANCE_INTERVAL_SECONDS)."""


@maintenance.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def maintenance_run(settings: Settings, as_json: bool) -> None:
    """Delete expired flows, sessions, codes, tokens, delivered mail and old counters now."""
    from idp import maintenance as housekeeping

    db = Database(settings.database_url, clock=_clock())
    try:
        purged = housekeeping.run(db, settings)
    finally:
        db.dispose()
    lines = [f"{name}: {count}" for name, count in purged.items()]
    emit(
        as_json,
        {"purged": purged, "total": sum(purged.values())},
        f"idp: purged {sum(purged.values())} expired row(s)\n  " + "\n  ".join(lines),
    )


@mail.command("retry-failed")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def mail_retry_failed(settings: Settings, as_json: bool) -> None:
    """Queue again every mail given up on after IDP_MAIL_MAX_ATTEMPTS (e.g. after fixing SMTP)."""
    from idp.mail.outbox import pending_count, retry_failed

    db = Database(settings.database_url, clock=_clock())
    try:
        requeued = retry_failed(db)
        pending = pending_count(db)
    finally:
        db.dispose()
    emit(
        as_json,
        {"requeued": requeued, "pending": pending},
        f"idp: queued {requeued} failed mail(s) again, {pending} pending",
    )


@main.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def demo(settings: Settings, as_json: bool) -> None:
    """Register the demo portal app (served under /demo) and a demo account (development)."""
    from idp.oidc.demo import ensure_demo

    if not settings.development:
        fail("the demo portal app exists only with IDP_ENV=development")
    db = Database.of(settings, clock=_clock())
    try:
        with db.unit_of_work() as session:
            result = ensure_demo(session, settings)
    finally:
        db.dispose()
    emit(
        as_json,
        {"client_id": result.client_id, "email": result.email, "url": result.url},
        f"idp: demo portal app at {result.url} (log in as {result.email} / {result.password})",
    )


@main.command("eid-simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind to.")
@click.option(
    "--port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="Port."
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("var/eid-simulator.pem"),
    show_default=True,
    help="Its signing key (PEM), created if missing.",
)
@with_settings
def eid_simulator(settings: Settings, host: str, port: int, key_file: Path) -> None:
    """Serve the eID simulator: a test OpenID Connect provider playing the eID service,
    with test persons (development only).

    It accepts the client IDP_EID_CLIENT_ID (authenticated with IDP_EID_CLIENT_SECRET, or
    with the key of IDP_EID_PRIVATE_KEY_FILE) returning to IDP_ISSUER/eid/callback; set
    IDP_EID_ISSUER to the issuer it prints.
    """
    from idp.settings import EID_SIMULATOR_PATH

    if not settings.development:
        fail("IDP_ENV: the eID simulator runs only with IDP_ENV=development", CONFIG_ERROR)
    if not settings.eid_client_id:
        fail("IDP_EID_CLIENT_ID: must be set; the simulator accepts that client", CONFIG_ERROR)
    if not settings.eid_client_secret and settings.eid_private_key_file is None:
        fail(
            "IDP_EID_CLIENT_SECRET: set it (or IDP_EID_PRIVATE_KEY_FILE); the simulator "
            "authenticates the client with it",
            CONFIG_ERROR,
        )
    import uvicorn

    from idp import logs
    from idp.eid.simulator import Simulator, load_or_create_key

    url_host = f"[{host}]" if ":" in host else host
    issuer = f"http://{url_host}:{port}{EID_SIMULATOR_PATH}"
    simulator = Simulator.from_settings(settings, issuer, load_or_create_key(key_file))
    click.echo(f"idp: eID simulator issuer {issuer}")
    if settings.eid_issuer != issuer:
        click.echo(f"idp: set IDP_EID_ISSUER={issuer} for idp to use it", err=True)
    uvicorn.run(
        simulator.app(),
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=logs.configure(settings.log_level),
    )


@main.group()
def bench() -> None:
    """Data for benchmarks and load tests (development only)."""


@bench.command("seed")
@click.option(
    "--accounts",
    type=click.IntRange(0, 9_999_999),
    default=10_000,
    show_default=True,
    help="Seeded verified accounts to have in total (only missing ones are added).",
)
@click.option("--password", help="Password of every seeded account and the known one.")
@click.option("--email", help="The known account's email.")
@click.option("--redirect-uri", help="Redirect URI of the bench client.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_settings
def bench_seed(
    settings: Settings,
    accounts: int,
    password: str | None,
    email: str | None,
    redirect_uri: str | None,
    as_json: bool,
) -> None:
    """Add seeded accounts (one shared password hash), the bench client and a known account.

    The client gets a new secret on every run; it is printed once.
    """
    from idp import seeding
    from idp.accounts.errors import AccountError, FormInvalid
    from idp.web.i18n import translate

    if not settings.development:
        fail("bench data belongs in development databases only (IDP_ENV=development)")

    def progress(done: int, total: int) -> None:
        click.echo(f"idp: {done:,} of {total:,} seeded accounts", err=True)

    db = Database.of(settings, clock=_clock())
    try:
        result = seeding.seed(
            db,
            settings,
            accounts=accounts,
            password=password or seeding.PASSWORD,
            email=email or seeding.EMAIL,
            redirect_uri=redirect_uri or seeding.REDIRECT_URI,
            progress=None if as_json else progress,
        )
    except ClientConfigurationError as exc:
        fail(str(exc))
    except FormInvalid as exc:
        fail("; ".join(translate("en", e.key, **e.params) for e in exc.errors))
    except AccountError as exc:
        fail(translate("en", exc.key, **exc.params))
    finally:
        db.dispose()
    emit(
        as_json,
        result.as_dict(),
        f"idp: {result.accounts:,} seeded accounts ({result.added:,} added in "
        f"{result.seconds:.1f} s), password {result.password!r}\n"
        f"idp: known account {result.email}; client {result.client_id}, "
        f"secret {result.client_secret}",
    )
