"""The eID simulator itself: its pages (German and English, without JavaScript,
labelled), its protocol endpoints, and what it refuses, over real HTTP."""

from __future__ import annotations

import base64
import re
import stat
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn

from idp.app import create_app
from idp.eid.oidc import OidcConnector
from idp.eid.simulator import PERSONS, Simulator, load_or_create_key
from idp.settings import EID_SIMULATOR_PATH
from tests.conftest import free_port, make_settings
from tests.eid.conftest import (
    REDIRECT_URI,
    eid_settings,
    identify,
    read_form,
    run,
    secret_client,
)


@pytest.fixture
def started(connector):
    """An authorization URL at the simulator, as the connector sends the browser there."""
    return run(connector.start(REDIRECT_URI)).url


def test_the_page_is_german_by_default_and_names_every_test_person(browser, started):
    page = browser.page(started)
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    buttons = read_form(page.text).buttons
    for person in PERSONS:
        assert person.label in buttons
    assert "Erika Mustermann" in buttons
    assert {"Abbrechen", "Kartenfehler: PIN gesperrt"} <= set(buttons)
    assert "Angaben selbst eingeben" in page.text


def test_the_page_speaks_english_when_asked(browser, connector):
    page = browser.page(run(connector.start(REDIRECT_URI, locale="en")).url)
    assert '<html lang="en">' in page.text
    assert {"Cancel", "Card error: PIN blocked", "Erika Mustermann"} <= set(
        read_form(page.text).buttons
    )


def test_the_language_switch_keeps_the_request(browser, started):
    page = browser.page(started)
    switch = re.search(r'<a href="([^"]+)" lang="en"', page.text)
    assert switch is not None
    english = browser.http.get(switch.group(1).replace("&amp;", "&"))
    assert '<html lang="en">' in english.text
    assert read_form(english.text).values["state"] == read_form(page.text).values["state"]


def test_the_pages_need_no_javascript_and_forbid_it(browser, started):
    for page in (browser.page(started), browser.page(started, view="attributes")):
        assert "<script" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"


def test_every_field_of_the_attributes_form_has_a_label(browser, started):
    page = browser.page(started, view="attributes").text
    ids = re.findall(r'<(?:input|select) type="(?:text|radio)" id="([^"]+)"', page)
    ids += re.findall(r'<select id="([^"]+)"', page)
    assert "family_name" in ids and "document_type" in ids and "card-2" in ids
    for field_id in ids:
        assert f'<label for="{field_id}">' in page


def test_a_missing_name_is_shown_in_an_error_summary_at_the_field(browser, started):
    page = browser.page(started, view="attributes")
    form = read_form(page.text)
    name, value = form.buttons["Mit diesen Angaben fortfahren"]
    answer = browser.http.post(
        form.action, data={**form.values, "family_name": "", "birthdate": "12.08.1964", name: value}
    )
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text
    assert '<a href="#family_name">' in answer.text and '<a href="#birthdate">' in answer.text
    assert 'aria-invalid="true" aria-describedby="family_name-error"' in answer.text
    assert 'value="12.08.1964"' in answer.text  # what was entered stays


def test_an_unknown_client_gets_a_page_not_a_redirect(browser, started):
    page = browser.http.get(started.replace("client_id=idp-test", "client_id=stranger"))
    assert page.status_code == 400 and "unknown client_id" in page.text
    assert "location" not in page.headers


def test_an_unregistered_redirect_uri_gets_a_page_not_a_redirect(browser, started):
    page = browser.http.get(started.replace("127.0.0.1%3A8000", "evil.example"))
    assert page.status_code == 400 and "redirect_uri" in page.text


def test_a_request_without_pkce_is_sent_back_with_invalid_request(browser, started):
    answer = browser.http.get(re.sub(r"&code_challenge=[^&]+", "", started))
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "state" in query and "iss" in query


def test_the_token_endpoint_refuses_an_unauthenticated_client(browser, simulator):
    answer = browser.http.post(
        f"{simulator.issuer}/token", data={"grant_type": "authorization_code", "code": "x"}
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client"}


def test_userinfo_refuses_a_request_without_a_live_token(browser, simulator):
    answer = browser.http.get(f"{simulator.issuer}/userinfo")
    assert answer.status_code == 401
    answer = browser.http.get(
        f"{simulator.issuer}/userinfo", headers={"Authorization": "Bearer nonsense"}
    )
    assert answer.status_code == 401


def test_discovery_and_keys_describe_the_simulator(browser, simulator):
    metadata = browser.http.get(f"{simulator.issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == simulator.issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    keys = browser.http.get(metadata["jwks_uri"]).json()["keys"]
    assert [key["kid"] for key in keys] == [simulator.simulator.key.kid]
    assert "d" not in keys[0]


def test_the_id_token_carries_the_pseudonym_and_userinfo_the_attributes(
    connector, browser, simulator
):
    params, begun = identify(connector, browser, "Dr. Jürgen Müller-Schönbäck")
    result = run(connector.finish(params, begun.pending))
    assert result.pseudonym == simulator.simulator.pseudonym("idp-test", "juergen", "1")
    assert simulator.simulator.requests["userinfo"] == 1


@pytest.mark.parametrize(
    ("method", "path", "options"),
    [
        ("GET", "/authorize", {"params": {"client_id": "\x00" * 3000}}),
        ("GET", "/authorize?client_id=idp-test&redirect_uri=%ff%fe&state=%00", {}),
        ("GET", "/authorize?client_id=idp-test&client_id=other&view=attributes", {}),
        ("POST", "/authorize", {"content": b"\xff\xfe=\xff", "headers": {"content-type": "x"}}),
        ("POST", "/authorize", {"data": {"client_id": "idp-test", "choice": "nobody"}}),
        ("POST", "/token", {"headers": {"Authorization": "Basic %%%"}}),
        ("POST", "/token", {"headers": {"Authorization": "Basic " + "w" * 5}}),
        ("POST", "/token", {"data": {"client_assertion_type": "x", "client_assertion": "a.b"}}),
        (
            "POST",
            "/token",
            {
                "data": {
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:"
                    "jwt-bearer",
                    "client_assertion": "e30.e30.AAAA",
                }
            },
        ),
        ("GET", "/userinfo", {"headers": {"Authorization": "Bearer \x7f"}}),
    ],
)
def test_hostile_requests_get_a_4xx_never_a_server_error(browser, simulator, method, path, options):
    answer = browser.http.request(method, f"{simulator.issuer}{path}", **options)
    assert 400 <= answer.status_code < 500 or answer.status_code == 303


def test_a_basic_header_with_the_secret_of_another_client_is_refused(browser, simulator):
    credentials = base64.b64encode(b"idp-test:wrong").decode()
    answer = browser.http.post(
        f"{simulator.issuer}/token",
        headers={"Authorization": f"Basic {credentials}"},
        data={"grant_type": "authorization_code", "code": "x"},
    )
    assert answer.status_code == 401


def test_its_key_is_kept_in_a_private_file_and_read_back(tmp_path):
    path = tmp_path / "var" / "eid-simulator.pem"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path).kid == key.kid


def test_the_simulator_works_mounted_in_idps_own_app(db, keys_dir, browser):
    port = free_port()
    settings = make_settings(db.url, keys_dir, issuer=f"http://127.0.0.1:{port}", port=port)
    app = create_app(settings)
    simulator = Simulator(
        f"{settings.issuer}{EID_SIMULATOR_PATH}",
        [secret_client(redirect_uris=(f"{settings.issuer}/eid/callback",))],
    )
    app.register(simulator.router())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.02)
        connector = OidcConnector.from_settings(eid_settings(simulator.issuer))
        begun = run(connector.start(f"{settings.issuer}/eid/callback"))
        params = browser.press(begun.url, "Erika Mustermann")
        assert run(connector.finish(params, begun.pending)).given_name == "ERIKA"
    finally:
        server.should_exit = True
        thread.join(10)
