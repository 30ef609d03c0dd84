"""RP-initiated logout and back-channel logout, delivered to a real HTTP receiver."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.accounts.registration import digest
from idp.db.models import Account, AuditEvent, BackchannelLogout, Flow
from idp.oidc import backchannel
from tests.conftest import free_port
from tests.oidc import factories
from tests.oidc.test_negative import authorize_url, redeem


class Receiver:
    """An RP's back-channel logout endpoint on loopback; answers with ``statuses`` in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.tokens: list[str] = []
        self.statuses = statuses
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = parse_qs(self.rfile.read(length).decode())
                receiver.tokens.append(body["logout_token"][0])
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/backchannel"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=None):
        made.append(Receiver(statuses or []))
        return made[-1]

    yield make
    for item in made:
        item.close()


def signed_in_tokens(live_server, db, info, account_id=None):
    browser = factories.Browser(live_server.url)
    account_id = account_id or factories.account(db)
    browser.log_in(factories.login_token(db, account_id, live_server.settings))
    code = factories.callback_params(browser.open(authorize_url(live_server, info)))["code"]
    return browser, redeem(live_server, info, code).json()


def delivered(rp, count=1):
    """The logout tokens the receiver got, waiting up to ten seconds for ``count``."""
    deadline = time.monotonic() + 10
    while len(rp.tokens) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return rp.tokens


def password_citizen(live_server, db):
    email, password = factories.password_account(db, live_server.settings)
    with db.unit_of_work() as session:
        account_id = session.scalars(select(Account.id).where(Account.email == email)).one()
    return account_id, email, password


def test_logout_with_a_hint_tells_every_client_of_the_session(live_server, db, receiver):
    rp = receiver()
    info = factories.client(db, backchannel_logout_uri=rp.url)
    browser, tokens = signed_in_tokens(live_server, db, info)
    id_claims = jwt.decode(tokens["id_token"], live_server_keys(live_server)).claims

    response = browser.http.get("/end-session", params={"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200
    assert "idp_session=" in response.headers.get("set-cookie", "")

    deadline = time.monotonic() + 10
    while not rp.tokens and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(rp.tokens) == 1
    logout = jwt.decode(rp.tokens[0], live_server_keys(live_server))
    assert logout.header["typ"] == "logout+jwt"
    assert logout.claims["aud"] == info.client_id
    assert logout.claims["sid"] == id_claims["sid"]
    assert logout.claims["sub"] == id_claims["sub"]
    assert backchannel.EVENT in logout.claims["events"]
    assert "nonce" not in logout.claims
    userinfo = httpx.get(
        f"{live_server.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert userinfo.status_code == 401, "tokens of the ended session stop working"
    with db.unit_of_work() as session:
        events = session.scalars(select(AuditEvent.event)).all()
    assert "oidc.backchannel_logout_delivered" in events


def live_server_keys(live_server):
    return KeySet.import_key_set(httpx.get(f"{live_server.url}/jwks.json").json())


def test_a_failed_delivery_is_retried_with_back_off_and_recorded(db, receiver, keys_dir, clock):
    rp = receiver([500])
    with db.unit_of_work() as session:
        session.add(
            BackchannelLogout(
                client_id="c",
                uri=rp.url,
                logout_token="t.t.t",
                sid="s",
                created_at=clock.now(),
                attempts=0,
                next_attempt_at=clock.now(),
            )
        )
    assert backchannel.deliver_due(db, max_attempts=3) == 0
    assert backchannel.deliver_due(db, max_attempts=3) == 0, "not due yet"
    clock.advance(timedelta(seconds=10))
    assert backchannel.deliver_due(db, max_attempts=3) == 1
    with db.unit_of_work() as session:
        row = session.scalars(select(BackchannelLogout)).one()
        assert row.attempts == 2 and row.delivered_at is not None
    assert len(rp.tokens) == 2


def test_delivery_gives_up_after_the_last_attempt(db, receiver, clock):
    rp = receiver([500, 500])
    with db.unit_of_work() as session:
        session.add(
            BackchannelLogout(
                client_id="c",
                uri=rp.url,
                logout_token="t.t.t",
                created_at=clock.now(),
                attempts=0,
                next_attempt_at=clock.now(),
            )
        )
    backchannel.deliver_due(db, max_attempts=2)
    clock.advance(timedelta(seconds=10))
    backchannel.deliver_due(db, max_attempts=2)
    with db.unit_of_work() as session:
        row = session.scalars(select(BackchannelLogout)).one()
        assert row.next_attempt_at is None and row.delivered_at is None
        assert row.last_error == "HTTP 500"
        assert "oidc.backchannel_logout_failed" in session.scalars(select(AuditEvent.event)).all()


def test_logout_without_a_hint_asks_first_and_never_redirects(live_server, db):
    info = factories.client(db)
    browser, _ = signed_in_tokens(live_server, db, info)
    page = browser.http.get(
        "/end-session",
        params={
            "client_id": info.client_id,
            "post_logout_redirect_uri": "https://rp.example.de/logged-out",
        },
    )
    assert page.status_code == 200 and 'action="/end-session/confirm"' in page.text
    done = browser.http.post("/end-session/confirm", data=factories.form_fields(page.text))
    assert done.status_code == 200, "no redirect without id_token_hint"
    assert (
        browser.http.get(authorize_url(live_server, info)).headers["location"].startswith("/login")
    )


def test_an_unregistered_post_logout_redirect_uri_is_not_followed(live_server, db):
    info = factories.client(db)
    browser, tokens = signed_in_tokens(live_server, db, info)
    response = browser.http.get(
        "/end-session",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
    )
    assert response.status_code == 200
    assert "location" not in response.headers


def test_an_access_token_is_not_an_id_token_hint(live_server, db):
    info = factories.client(db)
    browser, tokens = signed_in_tokens(live_server, db, info)
    response = browser.http.get("/end-session", params={"id_token_hint": tokens["access_token"]})
    assert response.status_code == 400
    assert "invalid_request" in response.text


def test_a_new_login_replacing_a_session_tells_the_clients_of_the_old_one(
    live_server, db, receiver
):
    rp = receiver()
    info = factories.client(db, backchannel_logout_uri=rp.url)
    account_id, email, password = password_citizen(live_server, db)
    browser, tokens = signed_in_tokens(live_server, db, info, account_id)
    old_sid = jwt.decode(tokens["id_token"], live_server_keys(live_server)).claims["sid"]

    page = browser.http.get("/login")
    fields = {**factories.form_fields(page.text), "email": email, "password": password}
    assert browser.http.post("/login", data=fields).status_code == 303

    (token,) = delivered(rp)
    assert jwt.decode(token, live_server_keys(live_server)).claims["sid"] == old_sid
    userinfo = httpx.get(
        f"{live_server.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert userinfo.status_code == 401, "tokens of the replaced session stop working"


def test_a_password_reset_tells_the_clients_of_every_session_of_the_account(
    live_server, db, receiver, clock
):
    rp = receiver()
    info = factories.client(db, backchannel_logout_uri=rp.url)
    account_id, _, _ = password_citizen(live_server, db)
    sids = set()
    for _ in range(2):  # two browsers
        _, tokens = signed_in_tokens(live_server, db, info, account_id)
        sids.add(jwt.decode(tokens["id_token"], live_server_keys(live_server)).claims["sid"])
    with db.unit_of_work() as session:
        session.add(
            Flow(
                id="reset-flow",
                kind="password_reset",
                account_id=account_id,
                state={"token_digest": digest("reset-token")},
                created_at=clock.now(),
                expires_at=clock.now() + timedelta(minutes=30),
            )
        )
    stranger = factories.Browser(live_server.url)
    page = stranger.http.get(
        "/password/reset", params={"flow": "reset-flow", "token": "reset-token"}
    )
    fields = {**factories.form_fields(page.text), "password": "Ein ganz neues Passwort am Rhein"}
    assert stranger.http.post("/password/reset", data=fields).status_code == 200

    tokens = delivered(rp, 2)
    keys = live_server_keys(live_server)
    assert {jwt.decode(t, keys).claims["sid"] for t in tokens} == sids


def _reset_password(live_server, db, account_id):
    """Set a new password through a reset link, in a browser of its own."""
    with db.unit_of_work() as session:
        session.add(
            Flow(
                id="reset-flow",
                kind="password_reset",
                account_id=account_id,
                state={"token_digest": digest("reset-token")},
                created_at=db.clock.now(),
                expires_at=db.clock.now() + timedelta(minutes=30),
            )
        )
    stranger = factories.Browser(live_server.url)
    page = stranger.http.get(
        "/password/reset", params={"flow": "reset-flow", "token": "reset-token"}
    )
    fields = {**factories.form_fields(page.text), "password": "Ein ganz neues Passwort am Rhein"}
    assert stranger.http.post("/password/reset", data=fields).status_code == 200


def _refresh(live_server, info, token):
    return httpx.post(
        f"{live_server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(info.client_id, info.client_secret),
    )


def test_a_password_reset_revokes_offline_access_grants_and_tells_their_clients(
    live_server, db, receiver
):
    # offline_access grants outlive a logout by design, and survived a password reset too.
    rp = receiver()
    told = factories.client(db, backchannel_logout_uri=rp.url)
    quiet = factories.client(db, name="Stadtbibliothek", first_party=True)
    account_id, _, _ = password_citizen(live_server, db)
    browser, logged_out = signed_in_tokens(live_server, db, told, account_id)
    offline = {}
    for info in (told, quiet):
        url = authorize_url(live_server, info, scope="openid offline_access")
        code = factories.callback_params(browser.open(url))["code"]
        offline[info.client_id] = redeem(live_server, info, code).json()
    hint = {"id_token_hint": logged_out["id_token"]}
    assert browser.http.get("/end-session", params=hint).status_code == 200
    assert len(delivered(rp, 1)) == 1
    for info in (told, quiet):  # logging out leaves offline access
        refreshed = _refresh(live_server, info, offline[info.client_id]["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        offline[info.client_id] = refreshed.json()

    _reset_password(live_server, db, account_id)

    for info in (told, quiet):
        refreshed = _refresh(live_server, info, offline[info.client_id]["refresh_token"])
        assert refreshed.json()["error"] == "invalid_grant"
        userinfo = httpx.get(
            f"{live_server.url}/userinfo",
            headers={"Authorization": f"Bearer {offline[info.client_id]['access_token']}"},
        )
        assert userinfo.status_code == 401
    tokens = delivered(rp, 2)
    assert len(tokens) == 2
    reset = jwt.decode(tokens[1], live_server_keys(live_server)).claims
    sub = jwt.decode(logged_out["id_token"], live_server_keys(live_server)).claims["sub"]
    assert (reset["aud"], reset["sub"], "sid" in reset) == (told.client_id, sub, False)
    with db.unit_of_work() as session:
        reasons = session.scalars(
            select(AuditEvent.data).where(AuditEvent.event == "grant.revoked")
        ).all()
    assert [r["reason"] for r in reasons].count("password_reset") == 2


def test_a_session_that_times_out_is_not_announced(live_server, db, receiver, clock):
    rp = receiver()
    info = factories.client(db, backchannel_logout_uri=rp.url)
    browser, _ = signed_in_tokens(live_server, db, info)
    clock.advance(timedelta(minutes=live_server.settings.session_idle_minutes + 1))
    assert browser.http.get("/account").status_code == 303, "the idle session ended"
    # Logout tokens are queued in the transaction that ends a session: none were.
    with db.unit_of_work() as session:
        assert session.scalars(select(BackchannelLogout)).all() == []
