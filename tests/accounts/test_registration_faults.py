"""Registration is one transaction: a failure after the account's insert leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text

from idp.db.models import Account, AuditEvent, Flow, MailMessage
from tests.accounts.conftest import register

# A real failing condition inside the database: the outbox refuses every insert, as a
# full disk would refuse the write that follows the account's.
REFUSE_MAIL = {
    "sqlite": [
        "CREATE TRIGGER refuse_mail BEFORE INSERT ON mail_outbox "
        "BEGIN SELECT RAISE(ABORT, 'the outbox refuses mail (test)'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_mail() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the outbox refuses mail (test)'; END $$",
        "CREATE TRIGGER refuse_mail BEFORE INSERT ON mail_outbox "
        "FOR EACH ROW EXECUTE FUNCTION refuse_mail()",
    ],
}
ALLOW_MAIL = {
    "sqlite": ["DROP TRIGGER IF EXISTS refuse_mail"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS refuse_mail ON mail_outbox",
        "DROP FUNCTION IF EXISTS refuse_mail()",
    ],
}


@contextmanager
def outbox_refusing_mail(db) -> Iterator[None]:
    with db.engine.begin() as connection:
        for statement in REFUSE_MAIL[db.dialect]:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with db.engine.begin() as connection:
            for statement in ALLOW_MAIL[db.dialect]:
                connection.execute(text(statement))


def _count(db, column) -> int:
    with db.unit_of_work() as session:
        return session.scalar(select(func.count(column)))


def test_a_failure_after_the_account_insert_leaves_no_account(app_client, mailbox, db):
    with outbox_refusing_mail(db):
        failed = register(app_client, "olga@example.de")
    assert failed.status_code == 500
    assert _count(db, Account.id) == 0
    assert _count(db, Flow.id) == 0
    assert _count(db, AuditEvent.id) == 0

    # The citizen's retry registers: no "you already have an account", one mail.
    retried = register(app_client, "olga@example.de")
    assert retried.status_code == 303
    assert retried.headers["location"].startswith("/verify-email?flow=")
    [mail] = mailbox.wait_for("olga@example.de")
    assert mail["Subject"] == "Bitte bestätigen Sie Ihre E-Mail-Adresse"
    assert _count(db, Account.id) == 1
    assert _count(db, MailMessage.id) == 1
