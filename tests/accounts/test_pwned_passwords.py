"""The optional Have I Been Pwned range check, against a fake range server on
loopback that answers in the k-anonymity format (SHA-1 suffix:count lines)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from idp.app import create_app
from idp.db.models import Account
from tests.accounts.conftest import STRONG, register
from tests.conftest import free_port

BREACHED = "Sonnenblumen am Marktplatz 17"


def _sha1(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


class RangeServer:
    """Answers GET /range/<5 hex digits> with the suffixes it knows under that prefix,
    padded with ``:0`` lines as the real API does for ``Add-Padding``; records requests."""

    def __init__(self, breached: dict[str, int], status: int = 200) -> None:
        self.suffixes: dict[str, list[str]] = {}
        for password, count in breached.items():
            digest = _sha1(password)
            self.suffixes.setdefault(digest[:5], []).append(f"{digest[5:]}:{count}")
        self.status = status
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                prefix = self.path.rsplit("/", 1)[-1]
                lines = [*server.suffixes.get(prefix, []), "0" * 35 + ":0", "F" * 35 + ":0"]
                body = "\r\n".join(lines).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/range/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def range_server() -> Iterator[RangeServer]:
    server = RangeServer({BREACHED: 4711})
    yield server
    server.close()


def _client(account_settings, hibp_url: str, clock) -> TestClient:
    settings = dataclasses.replace(account_settings, hibp_enabled=True, hibp_url=hibp_url)
    return TestClient(create_app(settings, clock=clock), base_url=settings.issuer)


def _account(db, address):
    with db.unit_of_work() as session:
        return session.scalar(select(Account).where(Account.email == address))


def test_a_password_the_range_api_knows_is_refused(account_settings, range_server, db, clock):
    with _client(account_settings, range_server.url, clock) as client:
        response = register(client, "ida@example.de", BREACHED)
    assert response.status_code == 400
    assert "in bekannt gewordenen Datenlecks enthalten" in response.text
    assert _account(db, "ida@example.de") is None


def test_only_the_five_character_prefix_of_the_sha1_leaves_the_service(
    account_settings, range_server, db, clock
):
    digest = _sha1(BREACHED)
    with _client(account_settings, range_server.url, clock) as client:
        register(client, "ida@example.de", BREACHED)
    assert [path for path, _headers in range_server.requests] == [f"/range/{digest[:5]}"]
    path, headers = range_server.requests[0]
    sent = (path + repr(headers)).upper()
    assert digest[5:10] not in sent
    assert BREACHED.upper() not in sent
    assert headers.get("Add-Padding") == "true"


def test_a_password_under_a_known_prefix_but_another_suffix_is_accepted(
    account_settings, range_server, db, clock
):
    with _client(account_settings, range_server.url, clock) as client:
        assert register(client, "jan@example.de", STRONG).status_code == 303
    assert range_server.requests[0][0] == f"/range/{_sha1(STRONG)[:5]}"
    assert _account(db, "jan@example.de") is not None


def test_the_range_check_is_off_by_default(account_settings, range_server, app_client, db):
    assert account_settings.hibp_enabled is False
    assert register(app_client, "kai@example.de", BREACHED).status_code == 303
    assert range_server.requests == []


@pytest.fixture(params=["unreachable", "answering 503"])
def broken_api(request) -> Iterator[str]:
    if request.param == "unreachable":
        yield f"http://127.0.0.1:{free_port()}/range/"  # nothing listens there
        return
    server = RangeServer({BREACHED: 4711}, status=503)
    yield server.url
    server.close()


def test_when_the_range_api_fails_the_bundled_list_still_applies(
    account_settings, broken_api, db, clock
):
    with _client(account_settings, broken_api, clock) as client:
        common = register(client, "lea@example.de", "passwort")
        assert common.status_code == 400
        assert "sehr verbreitet" in common.text
        # Registrations go on during an outage: only the bundled list is checked.
        assert register(client, "lea@example.de", BREACHED).status_code == 303
    assert _account(db, "lea@example.de") is not None
