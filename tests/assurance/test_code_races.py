"""Second-factor codes under concurrent requests: single use, and the pause after wrong codes.

The same step-up answer is posted from many signed-in browsers at once to `idp serve`
with two worker processes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyotp
from sqlalchemy import select

from idp import assurance
from idp.accounts import factors, recovery_codes
from idp.db.models import Account, AuditEvent, SecondFactor
from tests.assurance import factories

HIGH = assurance.HIGH
BROWSERS = 12


def _browsers(db, url: str, settings, owner_id: int, count: int) -> list[tuple[httpx.Client, str]]:
    """``count`` browsers, each with a password session of its own and a step-up page."""
    opened = []
    for _ in range(count):
        with db.unit_of_work() as session:
            token, _ = factories.login(session, session.get(Account, owner_id), settings)
        browser = httpx.Client(base_url=url, timeout=60)
        browser.cookies.set("idp_session", token)
        page = browser.get("/step-up", params={"return_to": "/account", "acr": HIGH})
        assert page.status_code == 200, page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        opened.append((browser, csrf))
    return opened


def _together(browsers, method: str, codes: list[str]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(browsers))

    def answer(pair) -> httpx.Response:
        (browser, csrf), code = pair
        barrier.wait()
        return browser.post(
            "/step-up",
            data={
                "csrf_token": csrf,
                "return_to": "/account",
                "acr": HIGH,
                "method": method,
                "code": code,
            },
        )

    with ThreadPoolExecutor(len(browsers)) as pool:
        return list(pool.map(answer, zip(browsers, codes, strict=True)))


def _fresh_totp(db, settings) -> tuple[int, str]:
    """A proofed account whose bound authenticator app's current code is still unused."""
    person = factories.citizen(db, settings, proofed=True, with_totp=True)
    return person.account_id, person.totp_secret


def test_one_totp_code_sent_from_many_sessions_at_once_is_accepted_once(two_workers, db, settings):
    owner_id, secret = _fresh_totp(db, settings)
    with two_workers() as url:
        browsers = _browsers(db, url, settings, owner_id, BROWSERS)
        code = pyotp.TOTP(secret).now()
        answers = _together(browsers, "totp", [code] * BROWSERS)

    assert all(a.status_code < 500 for a in answers), [a.status_code for a in answers]
    accepted = [a for a in answers if a.status_code == 303]
    # One, or none if the time step turned between fetching the code and sending it.
    assert len(accepted) <= 1, len(accepted)


def test_wrong_totp_codes_sent_at_once_are_checked_no_more_than_the_pause_allows(
    two_workers, db, settings
):
    owner_id, _ = _fresh_totp(db, settings)
    with two_workers() as url:
        browsers = _browsers(db, url, settings, owner_id, BROWSERS)
        answers = _together(browsers, "totp", [f"{n:06d}" for n in range(BROWSERS)])

    assert all(a.status_code == 400 for a in answers), [a.status_code for a in answers]
    with db.unit_of_work() as session:
        (factor,) = session.scalars(
            select(SecondFactor).where(
                SecondFactor.account_id == owner_id, SecondFactor.kind == "totp"
            )
        ).all()
        locks = session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.locked"))
        assert len(locks.all()) == 1
    assert factor.locked_until is not None
    wrong = [a for a in answers if "Uhr" not in a.text]  # the pause names its end
    assert len(wrong) == factors.MAX_FAILURES, len(wrong)


def test_one_recovery_code_sent_from_many_sessions_at_once_is_spent_once(two_workers, db, settings):
    person = factories.citizen(db, settings, proofed=True, with_totp=False)
    with db.unit_of_work() as session:
        owner = session.get(Account, person.account_id)
        digests = factories.code_digests(settings)
        code = recovery_codes.generate(session, owner, "proofing", digests)[0]
    with two_workers() as url:
        browsers = _browsers(db, url, settings, person.account_id, BROWSERS)
        answers = _together(browsers, "recovery", [code] * BROWSERS)

    assert sorted(a.status_code for a in answers) == [303] + [400] * (BROWSERS - 1)
    with db.unit_of_work() as session:
        assert recovery_codes.remaining(session, person.account_id) == recovery_codes.COUNT - 1
