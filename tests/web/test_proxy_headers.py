"""Which client address the service records: the TCP peer's, unless the peer is a proxy
named in IDP_FORWARDED_ALLOW_IPS (idp/web/http_protocol.py), through a real server."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from idp.db.models import AuditEvent
from idp.settings import Settings, SettingsError
from tests.accounts.conftest import FAST_HASH, csrf_token
from tests.conftest import LiveServer, free_port, make_settings

CLAIMED = "203.0.113.9"


def _failed_login_ip(db, settings: Settings) -> str | None:
    """Fail a login through a live server, claiming another client address; the address
    the audit event recorded."""
    with (
        LiveServer(settings, db.clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        token = csrf_token(http.get("/login").text)
        response = http.post(
            "/login",
            data={"email": "nobody@example.de", "password": "wrong password", "csrf_token": token},
            headers={"X-Forwarded-For": CLAIMED},
        )
    assert response.status_code == 400, response.text[:300]
    with db.unit_of_work() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event == "login.failure")).one()
    return event.ip


def _settings(db, keys_dir, **overrides) -> Settings:
    port = free_port()
    return make_settings(
        db.url, keys_dir, issuer=f"http://127.0.0.1:{port}", port=port, **FAST_HASH, **overrides
    )


def test_a_forwarded_for_header_from_loopback_is_ignored_by_default(db, keys_dir):
    assert _failed_login_ip(db, _settings(db, keys_dir)) == "127.0.0.1"


def test_a_forwarded_for_header_from_a_named_proxy_gives_the_client_address(db, keys_dir):
    settings = _settings(db, keys_dir, forwarded_allow_ips="127.0.0.1")
    assert _failed_login_ip(db, settings) == CLAIMED


def test_a_proxy_network_outside_the_peer_is_not_trusted(db, keys_dir):
    settings = _settings(db, keys_dir, forwarded_allow_ips="10.0.0.0/8")
    assert _failed_login_ip(db, settings) == "127.0.0.1"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", ""),
        ("*", "*"),
        (" 10.1.2.3 , 192.168.0.0/16", "10.1.2.3,192.168.0.0/16"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("::1", "::1"),
    ],
)
def test_forwarded_allow_ips_are_addresses_or_networks(raw, parsed):
    settings = Settings.from_env({"IDP_FORWARDED_ALLOW_IPS": raw})
    assert settings.forwarded_allow_ips == parsed


@pytest.mark.parametrize("raw", ["proxy.example.de", "*,10.0.0.1", "10.0.0.0/33"])
def test_forwarded_allow_ips_refuse_what_is_no_address(raw):
    with pytest.raises(SettingsError, match="IDP_FORWARDED_ALLOW_IPS"):
        Settings.from_env({"IDP_FORWARDED_ALLOW_IPS": raw})
