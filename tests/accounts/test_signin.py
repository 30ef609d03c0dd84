"""One sign-in flow for every way in: the password login and registration's auto-login both
open their session through idp.accounts.signin, with the same fixation, amr, auth_time,
last login time and audit event."""

from __future__ import annotations

from sqlalchemy import select

from idp.accounts.registration import create_account
from idp.accounts.sessions import token_digest
from idp.audit import events as audit
from idp.db.models import Account, AuditEvent, LoginSession
from tests.accounts.conftest import STRONG, code, login, register, submit


def _account(db, email: str) -> Account:
    with db.unit_of_work() as session:
        return session.scalars(select(Account).where(Account.email == email)).one()


def _sessions(db) -> list[LoginSession]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(LoginSession).order_by(LoginSession.id)))


def _successes(db) -> list[AuditEvent]:
    with db.unit_of_work() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event == "login.success")
                .order_by(AuditEvent.id)
            )
        )


def _assert_opened_by_the_sign_in_flow(db, email: str, cookie: str) -> None:
    """The browser's session is the account's newest, opened as every sign-in opens one."""
    account = _account(db, email)
    opened = _sessions(db)[-1]
    assert opened.account_id == account.id and opened.ended_at is None
    assert opened.kind == "citizen"
    assert opened.methods == [{"method": "pwd", "at": opened.created_at.isoformat()}]
    assert opened.auth_time == opened.created_at == account.last_login_at
    event = _successes(db)[-1]
    assert (event.account_id, event.ip, event.data) == (account.id, "testclient", {"amr": ["pwd"]})
    assert opened.token_digest == token_digest(cookie)
    with db.unit_of_work() as session:
        assert audit.verify(session) is None


def test_a_password_login_replaces_the_browsers_session_and_records_the_sign_in(
    app_client, account_settings, db
):
    with db.unit_of_work() as session:
        for address in ("erste@example.de", "zweite@example.de"):
            create_account(session, account_settings, email=address, password=STRONG, verified=True)
    assert login(app_client, "erste@example.de").status_code == 303
    before = app_client.cookies["idp_session"]

    assert login(app_client, "zweite@example.de").status_code == 303

    after = app_client.cookies["idp_session"]
    assert after != before
    first, second = _sessions(db)
    assert first.end_reason == "replaced" and first.ended_at is not None
    assert second.ended_at is None
    assert len(_successes(db)) == 2
    _assert_opened_by_the_sign_in_flow(db, "zweite@example.de", after)


def test_registrations_auto_login_opens_its_session_as_a_password_login_does(
    app_client, account_settings, mailbox, db
):
    with db.unit_of_work() as session:
        create_account(
            session, account_settings, email="vorher@example.de", password=STRONG, verified=True
        )
    assert login(app_client, "vorher@example.de").status_code == 303
    before = app_client.cookies["idp_session"]
    location = register(app_client, "neu@example.de").headers["location"]
    [mail] = mailbox.wait_for("neu@example.de")

    done = submit(
        app_client,
        location,
        "/verify-email",
        {"flow": location.split("flow=")[1], "code": code(mail)},
    )

    assert done.status_code == 200
    after = app_client.cookies["idp_session"]
    assert after != before
    earlier, opened = _sessions(db)
    assert earlier.end_reason == "replaced"
    assert [e.account_id for e in _successes(db)] == [earlier.account_id, opened.account_id]
    _assert_opened_by_the_sign_in_flow(db, "neu@example.de", after)
    assert "neu@example.de" in app_client.get("/account").text


def test_logging_out_ends_the_session_and_records_the_logout(app_client, account_settings, db):
    with db.unit_of_work() as session:
        account_id = create_account(
            session, account_settings, email="paula@example.de", password=STRONG, verified=True
        ).id
    login(app_client, "paula@example.de")

    assert submit(app_client, "/logout", "/logout", {}).status_code == 200

    (row,) = _sessions(db)
    assert row.end_reason == "logout"
    with db.unit_of_work() as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.event == "logout")).all()
    assert (event.account_id, event.ip) == (account_id, "testclient")
