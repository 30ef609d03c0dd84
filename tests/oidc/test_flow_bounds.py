"""What an anonymous /authorize may cost: a flow keeps only the bounded parameters it
needs, and one client address opens at most IDP_FLOWS_PER_IP_MINUTE flows a minute,
even when its requests arrive at once (idp/oidc/authorization.py)."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from sqlalchemy import func, select

from idp.db.models import Flow
from idp.oidc.authorization import KEPT_PARAMETERS, REDIRECT_PARAMETERS
from tests.conftest import LiveServer, free_port, make_settings, together
from tests.oidc import factories
from tests.test_cli import serving


def _params(info, **extra) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": info.client_id,
        "redirect_uri": info.redirect_uri,
        "scope": "openid",
        "state": "st",
        **extra,
    }


def _flows(db) -> list[Flow]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(Flow)))


def test_a_huge_authorization_request_is_refused_without_storing_it(client, db):
    info = factories.client(db)
    response = client.post(
        "/authorize", data=_params(info, state="s" * 60_000), follow_redirects=False
    )

    assert response.status_code == 400
    assert "invalid_request" in response.text and "state" in response.text
    assert "location" not in response.headers  # not echoed to the client
    assert _flows(db) == []


def test_each_kept_parameter_has_a_bound(client, db):
    info = factories.client(db)
    for name, longest in KEPT_PARAMETERS.items():
        too_long = _params(info, **{name: "x" * (longest + 1)})
        response = client.get("/authorize", params=too_long, follow_redirects=False)
        message = f"'{name}' is longer than {longest}"
        if name in REDIRECT_PARAMETERS:  # a page: a redirect would echo it
            assert response.status_code == 400, name
            assert message in html.unescape(response.text), name
        else:  # the client and its redirect URI are sound: the error goes back to it
            assert response.status_code == 302, name
            callback = parse_qs(urlsplit(response.headers["location"]).query)
            assert callback["error"] == ["invalid_request"], name
            assert message in callback["error_description"][0], name
    assert _flows(db) == []


def test_a_repeated_parameter_is_refused(client, db):
    info = factories.client(db)
    query = urlencode([*_params(info).items(), ("nonce", "a"), ("nonce", "b")])
    response = client.get(f"/authorize?{query}", follow_redirects=False)
    assert response.status_code == 302
    callback = parse_qs(urlsplit(response.headers["location"]).query)
    assert callback["error"] == ["invalid_request"]
    assert "'nonce'" in callback["error_description"][0]
    assert _flows(db) == []


def test_a_flow_keeps_only_the_parameters_it_needs(client, db):
    info = factories.client(db)
    response = client.post(
        "/authorize",
        data=_params(info, nonce="n", junk="j" * 50_000, other="o" * 10_000),
        follow_redirects=False,
    )

    assert response.status_code == 303
    (flow,) = _flows(db)
    assert dict(flow.state["params"]) == _params(info, nonce="n")
    assert len(json.dumps(flow.state)) < 500


def test_a_stored_flow_still_completes_after_login(client, db, settings):
    info = factories.client(db, first_party=True)
    response = client.get("/authorize", params=_params(info, nonce="n"), follow_redirects=False)
    resume = dict(p.split("=", 1) for p in response.headers["location"].split("?")[1].split("&"))
    account_id = factories.account(db)
    client.cookies.set("idp_session", factories.login_token(db, account_id, settings))

    done = client.get(f"/authorize/resume/{resume['flow']}", follow_redirects=False)

    callback = factories.callback_params(done)
    assert callback["state"] == "st" and callback["code"]


def _live(db, keys_dir, **overrides) -> LiveServer:
    port = free_port()
    settings = make_settings(
        db.url, keys_dir, issuer=f"http://127.0.0.1:{port}", port=port, **overrides
    )
    return LiveServer(settings, db.clock)


def test_one_address_opens_at_most_the_limit_of_flows_even_at_once(db, keys_dir, clock):
    info = factories.client(db)
    limit, fired = 5, 12
    with _live(db, keys_dir, flows_per_ip_minute=limit) as server:
        url = f"{server.url}/authorize?{urlencode(_params(info))}"
        answers = together([lambda: httpx.get(url, timeout=15) for _ in range(fired)])

        assert sorted(a.status_code for a in answers) == [303] * limit + [429] * (fired - limit)
        refused = next(a for a in answers if a.status_code == 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "zu viele Anfragen" in refused.text
        assert len(_flows(db)) == limit

        # A minute later the address may open flows again.
        clock.advance(timedelta(seconds=61))
        assert httpx.get(url, timeout=15).status_code == 303
    assert len(_flows(db)) == limit + 1


def test_the_limit_holds_across_two_worker_processes(db, keys_dir, tmp_path):
    info = factories.client(db)
    port = free_port()
    env = {
        "IDP_DATABASE_URL": db.url,
        "IDP_KEYS_DIR": str(keys_dir),
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "IDP_PORT": str(port),
        "IDP_WORKERS": "2",
        "IDP_FLOWS_PER_IP_MINUTE": "6",
        "IDP_METRICS_DIR": str(tmp_path / "metrics"),
        "AUTHLIB_INSECURE_TRANSPORT": "1",
    }
    with serving(env):
        url = f"{env['IDP_ISSUER']}/authorize?{urlencode(_params(info))}"
        # Separate connections, so the kernel spreads them over both workers.
        answers = together([lambda: httpx.get(url, timeout=30) for _ in range(16)])

    assert sorted(a.status_code for a in answers) == [303] * 6 + [429] * 10
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Flow)) == 6
