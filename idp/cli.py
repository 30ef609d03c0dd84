"""The ``idp`` command line: serve, migrate, manage keys (and, in their modules, more)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from idp.db.engine import Database
from idp.keys.store import ALGORITHMS, KeyStore, KeyStoreError
from idp.settings import Settings, SettingsError

CONFIG_ERROR = 2


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
    import uvicorn

    from idp import logs
    from idp.app import StartupError, build_services, create_app
    from idp.db.migrate import upgrade

    log_config = logs.configure(settings.log_level)

    if migrate:
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        try:
            KeyStore(settings.keys_dir, settings.keys_passphrase, db).ensure()
        finally:
            db.dispose()
    try:
        services = build_services(settings)
    except (StartupError, KeyStoreError) as exc:
        fail(str(exc), CONFIG_ERROR)
    if settings.development:
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    click.echo(f"idp: issuer {settings.issuer}")
    click.echo(f"idp: discovery {settings.issuer}/.well-known/openid-configuration")
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config,
        "proxy_headers": True,
        "server_header": False,
        "access_log": False,
    }
    if settings.workers > 1:
        # Each worker process builds its own services from the environment.
        services.db.dispose()
        uvicorn.run("idp.app:app_from_env", factory=True, workers=settings.workers, **options)
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
    return KeyStore(settings.keys_dir, settings.keys_passphrase, Database(settings.database_url))


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
@with_settings
def keys_rotate(settings: Settings, alg: str | None) -> None:
    """Next key becomes active, active becomes retired (still published), a new next is made."""
    try:
        activated = _store(settings).rotate(alg)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo("idp: now active: " + ", ".join(activated))


@keys.command("retire")
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

    db = Database(settings.database_url)
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

    db = Database(settings.database_url)
    try:
        sent = send_pending(db, settings, ignore_backoff=True)
        left = pending_count(db)
    finally:
        db.dispose()
    click.echo(f"idp: sent {sent} mail(s), {left} still pending")
    if left:
        sys.exit(1)
