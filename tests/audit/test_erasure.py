"""Erasing an account's personal data from the audit trail (GDPR Art. 17): the chain
still verifies, the erased account's events reveal nothing of it, and the chain still
notices an edited event, through logins over a real server."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from sqlalchemy import select

from idp.accounts.registration import create_account
from idp.audit import events as audit
from idp.db.models import AuditEvent, AuditHead
from tests.accounts.conftest import FAST_HASH, STRONG, csrf_token
from tests.conftest import LiveServer, free_port, make_settings
from tests.test_cli import run


@dataclasses.dataclass(frozen=True)
class Citizen:
    account_id: int
    email: str
    ip: str


def _served(db, keys_dir):
    port = free_port()
    settings = make_settings(
        db.url,
        keys_dir,
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        forwarded_allow_ips="127.0.0.1",
        **FAST_HASH,
    )
    return settings, LiveServer(settings, db.clock)


def _log_in(server: LiveServer, citizen: Citizen, password: str) -> int:
    """One login from the citizen's own address (through a trusted proxy); its status."""
    headers = {"X-Forwarded-For": citizen.ip}
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as http:
        token = csrf_token(http.get("/login").text)
        form = {"email": citizen.email, "password": password, "csrf_token": token}
        return http.post("/login", data=form).status_code


@pytest.fixture
def citizens(db, keys_dir) -> tuple[Citizen, Citizen]:
    """Two citizens, each with a failed and a successful login from an address of their
    own, and an event whose personal details name their email address."""
    settings, server = _served(db, keys_dir)
    people = []
    with db.unit_of_work() as session:
        for n, address in enumerate(["anna@example.de", "bert@example.de"]):
            account = create_account(
                session, settings, email=address, password=STRONG, verified=True
            )
            session.flush()
            people.append(Citizen(account.id, address, f"198.51.100.{n + 10}"))
    with server:
        for citizen in people:
            assert _log_in(server, citizen, "not the password") == 400
            assert _log_in(server, citizen, STRONG) == 303
    with db.unit_of_work() as session:
        for citizen in people:
            audit.record(
                session,
                "account.email_changed",
                account_id=citizen.account_id,
                ip=citizen.ip,
                data={"verified": True},
                personal={"email": citizen.email},
            )
    return people[0], people[1]


def _events(db) -> list[AuditEvent]:
    with db.unit_of_work() as session:
        return session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def _text(event: AuditEvent) -> str:
    """Every column of the event, as text."""
    return " ".join(repr(getattr(event, c.key)) for c in AuditEvent.__table__.columns)


def test_an_erased_account_leaves_a_chain_that_verifies_and_names_it_nowhere(db, citizens):
    anna, bert = citizens
    before = {e.id: e for e in _events(db)}
    annas = [e.id for e in before.values() if e.account_id == anna.account_id]
    berts = [e.id for e in before.values() if e.account_id == bert.account_id]
    # created, a failed login, a login, an email change
    assert len(annas) == len(berts) == 4
    with db.unit_of_work() as session:
        assert audit.verify(session) is None
        assert audit.erase_personal_data(session, anna.account_id, actor="test") == 4
    with db.unit_of_work() as session:
        assert audit.verify(session) is None
    after = {e.id: e for e in _events(db)}
    for event_id in annas:
        event = after[event_id]
        assert (event.account_id, event.ip, event.personal, event.seal_key) == (None,) * 4
        assert event.seal == before[event_id].seal and event.hash == before[event_id].hash
    for event in after.values():
        assert event.account_id != anna.account_id
        assert anna.ip not in _text(event) and anna.email not in _text(event)
    for event_id in berts:
        kept = after[event_id]
        assert (kept.account_id, kept.ip, kept.personal, kept.seal_key) == (
            bert.account_id,
            before[event_id].ip,
            before[event_id].personal,
            before[event_id].seal_key,
        )
    assert [after[i].ip for i in berts] == [None, bert.ip, bert.ip, bert.ip]
    (changed,) = [after[i] for i in berts if after[i].event == "account.email_changed"]
    assert changed.personal == {"email": bert.email}
    erased = after[max(after)]
    assert (erased.event, erased.actor, erased.data) == (audit.ERASED, "test", {"events": 4})
    assert (erased.account_id, erased.ip, erased.seal) == (None, None, None)


def test_erasing_again_clears_nothing_more_and_the_chain_still_verifies(db, citizens):
    anna, _ = citizens
    with db.unit_of_work() as session:
        assert audit.erase_personal_data(session, anna.account_id) == 4
    with db.unit_of_work() as session:
        assert audit.erase_personal_data(session, anna.account_id) == 0
    with db.unit_of_work() as session:
        assert audit.verify(session) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event", "login.failure"),
        ("actor", "someone"),
        ("client_id", "another-app"),
        ("data", {"amr": ["pwd", "otp"]}),
        ("at", "an hour later"),
        ("seal", b"\x01" * 32),
        ("account_id", "the other citizen"),
        ("ip", "192.0.2.1"),
        ("personal", {"email": "someone@example.de"}),
        ("seal_key", b"\x02" * 16),
    ],
)
def test_an_edited_event_breaks_the_chain_before_and_after_an_erasure(db, citizens, field, value):
    anna, bert = citizens
    with db.unit_of_work() as session:
        audit.erase_personal_data(session, anna.account_id)
    with db.unit_of_work() as session:
        (event,) = session.scalars(
            select(AuditEvent).where(
                AuditEvent.account_id == bert.account_id, AuditEvent.event == "login.success"
            )
        ).all()
        if value == "the other citizen":
            value = anna.account_id
        elif value == "an hour later":
            value = event.at.replace(hour=(event.at.hour + 1) % 24)
        setattr(event, field, value)
        edited = event.id
    with db.unit_of_work() as session:
        assert audit.verify(session) == edited


def test_an_erased_events_chained_fields_are_still_covered(db, citizens):
    anna, _ = citizens
    with db.unit_of_work() as session:
        audit.erase_personal_data(session, anna.account_id)
    with db.unit_of_work() as session:
        erased = session.scalars(
            select(AuditEvent).where(AuditEvent.seal_key.is_(None), AuditEvent.seal.is_not(None))
        ).first()
        erased.data = {**erased.data, "edited": True}
        edited = erased.id
    with db.unit_of_work() as session:
        assert audit.verify(session) == edited


def test_personal_fields_cleared_without_a_recorded_erasure_are_found(db, citizens):
    _, bert = citizens
    with db.unit_of_work() as session:
        (event,) = session.scalars(
            select(AuditEvent).where(
                AuditEvent.account_id == bert.account_id, AuditEvent.event == "login.success"
            )
        ).all()
        event.account_id = event.ip = event.personal = event.seal_key = None
        stripped = event.id
    with db.unit_of_work() as session:
        assert audit.verify(session) == stripped


def test_an_event_with_nothing_personal_has_no_seal(db):
    with db.unit_of_work() as session:
        event_id = audit.record(session, "client.added", actor="cli", client_id="app")
    with db.unit_of_work() as session:
        event = session.get(AuditEvent, event_id)
        assert (event.seal, event.seal_key, event.personal) == (None, None, None)
        assert audit.verify(session) is None


def test_a_head_that_names_another_hash_breaks_the_chain(db, citizens):
    with db.unit_of_work() as session:
        head = session.get(AuditHead, 1)
        head.last_hash = b"\x03" * 32
        last = head.last_id
    with db.unit_of_work() as session:
        assert audit.verify(session) == last


def test_idp_audit_verify_says_whether_the_trail_verifies(db, citizens):
    env = {"IDP_DATABASE_URL": db.url}
    verified = run("audit", "verify", "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == {"verified": True, "broken_at": None}
    with db.unit_of_work() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
        event.ip = "192.0.2.1"
        edited = event.id
    broken = run("audit", "verify", env=env)
    assert broken.returncode == 1
    assert f"event {edited} does not fit" in broken.stderr
