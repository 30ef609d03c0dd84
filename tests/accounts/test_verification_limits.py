"""Limits on email codes and mail, under concurrency: two servers on one database, the
same request fired many times at once (issue 18: a verification code could be guessed,
a form could flood a mailbox)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from idp.accounts.registration import create_account
from idp.db.models import Account, Flow, MailMessage
from tests.accounts.conftest import FAST_HASH, STRONG, code, csrf_token, served_settings
from tests.conftest import LiveServer, make_settings, together
from tests.oidc import factories

GUESSES = 100
WRONG = "Der Code stimmt nicht"
CODE_SPENT = "Der Code wurde zu oft falsch eingegeben"
DAY_SPENT = "Der Code wurde heute zu oft falsch eingegeben"


@contextlib.contextmanager
def _two_nodes(db, keys_dir, mailbox, tmp_path) -> Iterator[list[LiveServer]]:
    """Two servers (as two workers or two machines) on one database, mailing ``mailbox``."""
    servers = []
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            settings = served_settings(db, keys_dir, mailbox, tmp_path)
            servers.append(stack.enter_context(LiveServer(settings, db.clock)))
        yield servers


class Citizen:
    """One browser, whose requests may go to either node (they share the secret)."""

    def __init__(self, nodes: list[LiveServer]) -> None:
        self.nodes = nodes
        self.http = httpx.Client(base_url=nodes[0].url, follow_redirects=False, timeout=30)
        self.csrf = csrf_token(self.http.get("/register").text)

    def post(self, i: int, path: str, data: dict[str, str]) -> httpx.Response:
        url = self.nodes[i % len(self.nodes)].url + path
        with httpx.Client(cookies=self.http.cookies, timeout=30) as http:
            return http.post(url, data={**data, "csrf_token": self.csrf})


def _flow_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:300]
    return re.search(r"flow=([\w-]+)", response.headers["location"]).group(1)


def _guesstogether(citizen: Citizen, flow: str, right: str) -> list[httpx.Response]:
    wrong = [f"{n:06d}" for n in range(GUESSES + 1) if f"{n:06d}" != right][:GUESSES]
    return together(
        [
            lambda i=i, guess=guess: citizen.post(i, "/verify-email", {"flow": flow, "code": guess})
            for i, guess in enumerate(wrong)
        ]
    )


def _count(answers: list[httpx.Response], text: str) -> int:
    assert all(a.status_code < 500 for a in answers), [a.status_code for a in answers]
    return sum(text in a.text for a in answers)


def test_a_hundred_parallel_code_guesses_get_five_per_code_and_ten_per_day(
    db, keys_dir, mailbox, tmp_path, clock
):
    with _two_nodes(db, keys_dir, mailbox, tmp_path) as nodes:
        citizen = Citizen(nodes)
        registered = citizen.post(
            0,
            "/register",
            {"email": "opfer@example.de", "password": STRONG, "privacy_consent": "yes"},
        )
        flow = _flow_of(registered)
        [first] = mailbox.wait_for("opfer@example.de")

        answers = _guesstogether(citizen, flow, code(first))
        assert _count(answers, WRONG) == 5  # the code's five tries, no more
        assert _count(answers, CODE_SPENT) == GUESSES - 5

        # A new code (after the cool-down) has five tries of its own ...
        clock.advance(timedelta(seconds=61))
        assert citizen.post(1, "/verify-email/resend", {"flow": flow}).status_code == 303
        _, second = mailbox.wait_for("opfer@example.de", count=2)
        answers = _guesstogether(citizen, flow, code(second))
        assert _count(answers, WRONG) == 5

        # ... but the address's ten a day are spent: no code is compared until tomorrow.
        clock.advance(timedelta(seconds=61))
        assert citizen.post(0, "/verify-email/resend", {"flow": flow}).status_code == 303
        *_, third = mailbox.wait_for("opfer@example.de", count=3)
        answers = _guesstogether(citizen, flow, code(third))
        assert _count(answers, WRONG) == 0
        right = citizen.post(1, "/verify-email", {"flow": flow, "code": code(third)})
        assert DAY_SPENT in right.text
        with db.unit_of_work() as session:
            account = session.scalar(select(Account).where(Account.email == "opfer@example.de"))
            assert account.email_verified_at is None

        # The day's window (from the first try) ends before the third code expires.
        clock.advance(timedelta(days=1, seconds=-60))
        right = citizen.post(0, "/verify-email", {"flow": flow, "code": code(third)})
        assert right.status_code == 200, right.text[:300]
        with db.unit_of_work() as session:
            account = session.scalar(select(Account).where(Account.email == "opfer@example.de"))
            assert account.email_verified_at is not None


def test_asking_again_for_verification_keeps_one_flow_and_mails_once_per_cool_down(
    db, keys_dir, mailbox, tmp_path, clock
):
    with db.unit_of_work() as session:
        settings = make_settings(db.url, keys_dir, **FAST_HASH)
        account = create_account(
            session, settings, email="ungeprueft@example.de", password=STRONG, verified=False
        )
        account_id = account.id
    with _two_nodes(db, keys_dir, mailbox, tmp_path) as nodes:
        citizen = Citizen(nodes)
        citizen.http.cookies.set("idp_session", factories.login_token(db, account_id, settings))
        answers = together(
            [lambda i=i: citizen.post(i, "/account/verify-email", {}) for i in range(20)]
        )
        flows = {_flow_of(answer) for answer in answers}
        assert len(flows) == 1
        with db.unit_of_work() as session:
            assert (
                session.scalar(
                    select(func.count()).select_from(Flow).where(Flow.account_id == account_id)
                )
                == 1
            )
            assert session.scalar(select(func.count()).select_from(MailMessage)) == 1
        [first] = mailbox.wait_for("ungeprueft@example.de")

        # After the cool-down, asking again mails the same flow a new code.
        clock.advance(timedelta(seconds=61))
        again = citizen.post(1, "/account/verify-email", {})
        assert _flow_of(again) == flows.pop()
        _, second = mailbox.wait_for("ungeprueft@example.de", count=2)
        flow = _flow_of(again)
        if code(first) != code(second):
            old = citizen.post(0, "/verify-email", {"flow": flow, "code": code(first)})
            assert WRONG in old.text
        new = citizen.post(1, "/verify-email", {"flow": flow, "code": code(second)})
        assert new.status_code == 200, new.text[:300]


def test_twenty_registrations_of_a_known_address_send_one_mail_per_cool_down(
    db, keys_dir, mailbox, tmp_path, clock
):
    with db.unit_of_work() as session:
        settings = make_settings(db.url, keys_dir, **FAST_HASH)
        create_account(session, settings, email="paula@example.de", password=STRONG, verified=True)
    form = {"email": "paula@example.de", "password": STRONG, "privacy_consent": "yes"}

    def mails() -> int:
        with db.unit_of_work() as session:
            return session.scalar(
                select(func.count())
                .select_from(MailMessage)
                .where(MailMessage.recipient == "paula@example.de")
            )

    with _two_nodes(db, keys_dir, mailbox, tmp_path) as nodes:
        citizen = Citizen(nodes)
        answers = together([lambda i=i: citizen.post(i, "/register", form) for i in range(20)])
        assert all(answer.status_code == 303 for answer in answers)
        assert mails() == 1
        # The window runs from the mail that went out, not from the refused ones: the
        # owner hears again once it is over, however often the form is sent meanwhile.
        clock.advance(timedelta(seconds=40))
        citizen.post(0, "/register", form)
        assert mails() == 1
        clock.advance(timedelta(seconds=21))
        citizen.post(1, "/register", form)
        assert mails() == 2
    assert len(mailbox.wait_for("paula@example.de", count=2)) == 2
