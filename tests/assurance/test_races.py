"""Second factors under concurrent requests: a unique key collision is a 4xx, not a 500."""

from __future__ import annotations

import html

import httpx
from sqlalchemy import select

from idp.accounts import passkeys
from idp.db.models import SecondFactor
from tests.assurance import factories
from tests.assurance.authenticator import SoftAuthenticator
from tests.conftest import together
from tests.oidc.factories import form_fields
from tests.oidc.test_races import ROUNDS


def test_one_passkey_registered_from_two_tabs_at_once_is_stored_once(live_server, db):
    # Two enrolment pages open; an authenticator (a faulty or hostile one: a proper one
    # makes a new credential each time) answers both with the same credential id.
    _, origin = passkeys.relying_party(live_server.url)
    for _ in range(ROUNDS):
        with db.unit_of_work() as session:
            owner = factories.account(session)
            token, _ = factories.login(session, owner, live_server.settings)
            owner_id = owner.id
        authenticator = SoftAuthenticator()
        tabs = []
        for _ in range(2):
            tab = httpx.Client(base_url=live_server.url, timeout=10)
            tab.cookies.set("idp_session", token)
            page = tab.get("/account/security/passkey")
            assert page.status_code == 200
            options = html.unescape(page.text.split('data-options="')[1].split('"')[0])
            form = {**form_fields(page.text), "credential": authenticator.create(options, origin)}
            tabs.append((tab, form))

        answers = together(
            [
                lambda tab=tab, form=form: tab.post("/account/security/passkey", data=form)
                for tab, form in tabs
            ]
        )

        stored_first = [a for a in answers if a.headers.get("location", "").endswith("=passkey")]
        assert len(stored_first) == 1, [a.text for a in answers]
        (refused,) = [a for a in answers if a not in stored_first]
        if refused.status_code == 303:
            # It came second: the account now has a factor, so a change first needs one
            # confirmed (idp.accounts.reauthentication).
            assert refused.headers["location"].startswith("/account/confirm?")
        else:
            assert refused.status_code == 400
            assert 'data-webauthn="create"' in refused.text  # the page again, with a message
        with db.unit_of_work() as session:
            stored = session.scalars(
                select(SecondFactor).where(SecondFactor.account_id == owner_id)
            ).all()
        assert [f.credential_id for f in stored] == [authenticator.credential_id]
