"""Bulk data for benchmarks and load tests: many verified accounts, fast.

``seed`` makes sure the database holds N seeded accounts (``seed-0000000@example.test``
onwards, verified, proofing level ``low``), a confidential client that may use
every grant, and one known account, and returns what a load generator needs to
use them. Hashing a million passwords is not what is measured, so every seeded
account shares one argon2id hash of the same password, made once with the
configured parameters (a login still verifies it at full cost). Rows go in with
PostgreSQL's COPY or, on SQLite, one executemany per batch, committed per batch,
so a million accounts take well under a minute; running it again only adds the
accounts that are missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from idp import clock
from idp.accounts.passwords import passwords_for
from idp.accounts.registration import create_account
from idp.audit.events import record
from idp.db.engine import Database
from idp.db.models import Account, Client
from idp.oidc.clients import add_client, update_client
from idp.settings import Settings

PASSWORD = "correct horse battery staple"  # noqa: S105 - bench accounts' published password
EMAIL = "bench@example.test"
CLIENT_ID = "bench"
REDIRECT_URI = "http://127.0.0.1:9/cb"  # loopback, never contacted: drivers stop at the redirect
PREFIX = "seed-"
DOMAIN = "example.test"  # RFC 2606: never a real mailbox
DIGITS = 7
MAX_ACCOUNTS = 10**DIGITS - 1
BATCH = 50_000
COLUMNS = (
    "subject",
    "email",
    "email_verified_at",
    "password_hash",
    "proofing_level",
    "locale",
    "created_at",
    "updated_at",
)


def seeded_email(n: int) -> str:
    """The email of the ``n``-th seeded account (0-based)."""
    return f"{PREFIX}{n:0{DIGITS}d}@{DOMAIN}"


@dataclass(frozen=True, slots=True)
class Seeded:
    """What a load generator needs: the client, the known account, the seeded accounts."""

    accounts: int
    added: int
    seconds: float
    client_id: str
    client_secret: str
    redirect_uri: str
    email: str
    password: str
    email_pattern: str

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


def seeded_count(connection: Connection) -> int:
    """How many seeded accounts exist: one past the highest number (an index lookup)."""
    highest = connection.scalar(
        select(func.max(Account.email)).where(
            Account.email >= PREFIX + "0", Account.email < PREFIX + ":"
        )
    )
    return int(highest[len(PREFIX) : len(PREFIX) + DIGITS]) + 1 if highest else 0


def _rows(start: int, stop: int, password_hash: str, now: datetime) -> Iterator[tuple]:
    for n in range(start, stop):
        yield (str(uuid.uuid4()), seeded_email(n), now, password_hash, "low", "de", now, now)


def _copy(connection: Connection, rows: Iterator[tuple]) -> None:
    """PostgreSQL: one COPY, the fastest way in."""
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(f"COPY accounts ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _executemany(connection: Connection, rows: Iterator[tuple]) -> None:
    """Other databases: one Core executemany."""
    connection.execute(insert(Account), [dict(zip(COLUMNS, row, strict=True)) for row in rows])


def add_accounts(
    db: Database,
    settings: Settings,
    total: int,
    password: str,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
) -> int:
    """Add seeded accounts until there are ``total``; return how many were added."""
    with db.engine.connect() as connection:
        start = seeded_count(connection)
    if start >= total:
        return 0
    password_hash = passwords_for(settings).hash(password)
    write = _copy if db.dialect == "postgresql" else _executemany
    now = clock.now(db)
    for low in range(start, total, batch):
        high = min(low + batch, total)
        with db.engine.begin() as connection:
            write(connection, _rows(low, high, password_hash, now))
        if progress:
            progress(high, total)
    if db.dialect == "postgresql":
        # What an operator does after a bulk load: statistics for the planner, and the
        # visibility map set now rather than by autovacuum in the middle of later work.
        # VACUUM runs outside a transaction.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # A bulk load's vacuum may run longer than a request's statement may.
            connection.exec_driver_sql("SET statement_timeout = 0")
            try:
                connection.exec_driver_sql("VACUUM (ANALYZE) accounts")
            finally:
                connection.exec_driver_sql("RESET statement_timeout")
    else:
        # SQLite: the load's pages copied from the write-ahead log into the database now,
        # not by the first writer after it (the log has grown by the whole load).
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return total - start


def seed(
    db: Database,
    settings: Settings,
    *,
    accounts: int,
    password: str = PASSWORD,
    email: str = EMAIL,
    redirect_uri: str = REDIRECT_URI,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
) -> Seeded:
    """Seeded accounts up to ``accounts``, the bench client (new secret), the known account."""
    if not 0 <= accounts <= MAX_ACCOUNTS:
        raise ValueError(f"accounts must be between 0 and {MAX_ACCOUNTS}")
    started = time.perf_counter()
    added = add_accounts(db, settings, accounts, password, progress, batch)
    with db.unit_of_work() as session:
        fields = {
            "name": "Benchmark",
            "redirect_uris": [redirect_uri],
            "scopes": ["openid", "profile", "email", "offline_access"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": settings.id_token_signing_alg,
        }
        if session.get(Client, CLIENT_ID) is None:
            _, secret = add_client(session, actor="cli", client_id=CLIENT_ID, **fields)
        else:
            _, secret = update_client(session, CLIENT_ID, new_secret=True, actor="cli", **fields)
        assert secret is not None
        known = session.scalar(select(Account).where(Account.email == email))
        if known is None:
            create_account(session, settings, email=email, password=password, verified=True)
        else:
            session.execute(
                update(Account)
                .where(Account.id == known.id)
                .values(password_hash=passwords_for(settings).hash(password))
            )
        if added:
            record(session, "bench.seeded", actor="cli", data={"accounts": added})
    with db.engine.connect() as connection:
        total = seeded_count(connection)
    return Seeded(
        accounts=total,
        added=added,
        seconds=round(time.perf_counter() - started, 2),
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uri=redirect_uri,
        email=email,
        password=password,
        email_pattern=f"{PREFIX}{{n:0{DIGITS}d}}@{DOMAIN}",
    )
