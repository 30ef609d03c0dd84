"""Two requests racing on one unique key both succeed (no 500 from the constraint).

Each test sends the racing requests from threads released together by a barrier, to a
real server, so the requests really overlap in the database; a few rounds make a
collision near certain on the code that read a row and then inserted it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from idp.db.models import Consent, RevokedAccessToken
from tests.conftest import LiveServer, free_port, make_settings, together
from tests.oidc import factories
from tests.oidc.test_negative import authorize_url

ROUNDS = 4
TABS = 4


def test_one_account_consenting_in_several_tabs_at_once(live_server, db):
    account_id = factories.account(db)
    token = factories.login_token(db, account_id, live_server.settings)
    scope_sets = ["openid email", "openid profile", "openid phone", "openid address"]
    for _ in range(ROUNDS):
        info = factories.client(db)
        tabs = []
        for scope in scope_sets[:TABS]:
            tab = factories.Browser(live_server.url)
            tab.log_in(token)
            page = tab.open(authorize_url(live_server, info, scope=scope), consent=None)
            assert urlsplit(str(page.url)).path == "/consent"
            tabs.append((tab, {**factories.form_fields(page.text), "decision": "allow"}))

        answers = together(
            [lambda tab=tab, form=form: tab.http.post("/consent", data=form) for tab, form in tabs]
        )

        assert all(a.status_code in (302, 303) for a in answers), [a.text[:300] for a in answers]
        with db.unit_of_work() as session:
            rows = session.scalars(
                select(Consent).where(
                    Consent.account_id == account_id, Consent.client_id == info.client_id
                )
            ).all()
        # One row that remembers every tab's decision: none of them is asked again.
        assert len(rows) == 1
        assert sorted(rows[0].scopes) == ["address", "email", "openid", "phone", "profile"]
        for (tab, _), scope in zip(tabs, scope_sets, strict=True):
            again = tab.open(authorize_url(live_server, info, scope=scope), consent=None)
            assert "code" in factories.callback_params(again)


def test_a_client_revoking_one_access_token_on_two_nodes_at_once(live_server, db, clock):
    # Revocation runs on the event loop, so one node takes its requests in turn; two
    # nodes on one database (two workers, two machines) overlap.
    info = factories.client(
        db, grant_types=["client_credentials"], scopes=["profile"], redirect_uris=[]
    )
    auth = (info.client_id, info.client_secret)
    port = free_port()
    other = make_settings(db.url, live_server.settings.keys_dir, issuer=live_server.url, port=port)
    with LiveServer(other, clock):
        nodes = [
            httpx.Client(base_url=url, timeout=10)
            for url in (live_server.url, f"http://127.0.0.1:{port}")
        ]
        for _ in range(ROUNDS):
            token = (
                nodes[0]
                .post(
                    "/token",
                    data={"grant_type": "client_credentials", "scope": "profile"},
                    auth=auth,
                )
                .json()["access_token"]
            )

            answers = together(
                [
                    lambda node=node, token=token: node.post(
                        "/revoke", data={"token": token}, auth=auth
                    )
                    for node in nodes * 2
                ]
            )

            assert [a.status_code for a in answers] == [200] * 4, [a.text[:300] for a in answers]
            for node in nodes:
                inactive = node.post("/introspect", data={"token": token}, auth=auth).json()
                assert inactive == {"active": False}
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(RevokedAccessToken)) == ROUNDS
