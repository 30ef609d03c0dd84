"""The service's clock: injected where an app is built, frozen in tests, never global."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from litestar.testing import TestClient

from idp.app import create_app
from idp.clock import FrozenClock, SystemClock
from tests.oidc import factories


def test_a_frozen_clock_stands_still_until_moved(clock):
    clock = FrozenClock(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    clock.advance(timedelta(seconds=30))
    assert clock.now() == datetime(2030, 1, 2, 3, 4, 35, tzinfo=UTC)
    clock.set(datetime(2031, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2031, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone"):
        FrozenClock(datetime(2030, 1, 1))


def test_the_system_clock_tells_utc():
    now = SystemClock().now()
    assert now.tzinfo == UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def _token_issued_at(client: TestClient, info: factories.ClientInfo) -> int:
    response = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(info.client_id, info.client_secret),
    )
    assert response.status_code == 200, response.text
    return jwt.decode(
        response.json()["access_token"], client.app.state.services.keys.public_keyset()
    ).claims["iat"]


def test_two_apps_in_one_process_each_go_by_their_own_clock(db, settings):
    info = factories.client(
        db, grant_types=["client_credentials"], scopes=["profile"], redirect_uris=[]
    )
    early = FrozenClock(datetime.now(UTC))
    late = FrozenClock(early.now() + timedelta(hours=1))
    with (
        TestClient(create_app(settings, clock=early), base_url=settings.issuer) as one,
        TestClient(create_app(settings, clock=late), base_url=settings.issuer) as two,
    ):
        assert _token_issued_at(two, info) - _token_issued_at(one, info) == 3600
        early.advance(timedelta(minutes=10))
        assert _token_issued_at(two, info) - _token_issued_at(one, info) == 3000
