"""Every way an identification can fail ends in its typed failure, never in another
exception: the citizen's choices at the eID service, a hostile or failing upstream (the
simulator's test modes, over real HTTP), a callback that is not the flow's."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from idp.eid.errors import (
    EidCancelled,
    EidFailure,
    EidInvalidResponse,
    EidStateInvalid,
    EidUnavailable,
    EidUpstreamError,
)
from idp.eid.oidc import OidcConnector
from tests.conftest import free_port
from tests.eid.conftest import (
    REDIRECT_URI,
    eid_settings,
    identify,
    run,
    simulator_issuer,
)


def failure_of(connector, params, pending) -> EidFailure:
    with pytest.raises(EidFailure) as failure:
        run(connector.finish(params, pending))
    return failure.value


def test_cancelling_at_the_eid_service_is_eid_cancelled(connector, browser):
    params, begun = identify(connector, browser, "Abbrechen")
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidCancelled)
    assert failure.code == "access_denied"


@pytest.mark.parametrize(
    ("button", "code"),
    [
        ("Kartenfehler: PIN gesperrt", "pin_blocked"),
        ("Kartenfehler: Online-Ausweisfunktion nicht eingeschaltet", "online_function_inactive"),
    ],
)
def test_a_card_error_is_an_upstream_error_with_its_code(connector, browser, button, code):
    params, begun = identify(connector, browser, button)
    failure = failure_of(connector, params, begun.pending)
    assert type(failure) is EidUpstreamError
    assert failure.code == code


def test_an_unknown_upstream_error_is_other(connector, browser):
    _params, begun = identify(connector, browser)
    params = {"state": begun.pending.state, "iss": connector.issuer, "error": "weird_thing"}
    failure = failure_of(connector, params, begun.pending)
    assert type(failure) is EidUpstreamError and failure.code == "other"


def test_an_upstream_reporting_its_own_failure_is_unavailable(connector, browser):
    _params, begun = identify(connector, browser)
    params = {"state": begun.pending.state, "iss": connector.issuer, "error": "server_error"}
    assert isinstance(failure_of(connector, params, begun.pending), EidUnavailable)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("bad_signature", "bad_signature"),
        ("unknown_kid", "unknown_kid"),
        ("wrong_iss", "wrong_iss"),
        ("wrong_aud", "wrong_aud"),
        ("wrong_azp", "wrong_azp"),
        ("expired", "expired"),
        ("iat_future", "issued_in_future"),
        ("wrong_nonce", "wrong_nonce"),
        ("userinfo_sub", "userinfo_sub"),
    ],
)
def test_an_untrustworthy_answer_is_an_invalid_response(connector, browser, mode, reason):
    params, begun = identify(connector, browser, hostile=mode)
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidInvalidResponse)
    assert failure.reason == reason


def test_a_token_endpoint_answering_500_is_unavailable(connector, browser):
    params, begun = identify(connector, browser, hostile="server_error")
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidUnavailable) and failure.reason == "server_error"


def test_a_token_endpoint_slower_than_the_timeout_is_unavailable(simulator, browser):
    connector = OidcConnector.from_settings(eid_settings(simulator.issuer))
    connector.timeout = 0.5  # the settings' smallest is a second; the simulator waits 1.5
    params, begun = identify(connector, browser, hostile="slow")
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidUnavailable) and failure.reason == "timeout"


def test_an_unreachable_eid_service_is_unavailable_at_the_start():
    connector = OidcConnector.from_settings(eid_settings(simulator_issuer(free_port())))
    with pytest.raises(EidUnavailable) as failure:
        run(connector.start(REDIRECT_URI))
    assert failure.value.reason == "unreachable"


def test_discovery_naming_another_issuer_is_refused(simulator):
    elsewhere = simulator.issuer.replace("127.0.0.1", "localhost")
    connector = OidcConnector.from_settings(eid_settings(elsewhere))
    with pytest.raises(EidInvalidResponse) as failure:
        run(connector.start(REDIRECT_URI))
    assert failure.value.reason == "discovery_issuer"


def test_an_unknown_kid_refetches_the_keys_once_only(simulator, connector, browser):
    params, begun = identify(connector, browser, hostile="unknown_kid")
    failure_of(connector, params, begun.pending)
    assert simulator.simulator.requests["jwks"] == 2


def test_a_rotated_key_is_fetched_again_and_accepted(simulator, connector, browser):
    params, begun = identify(connector, browser)
    run(connector.finish(params, begun.pending))
    params, begun = identify(connector, browser, hostile="rotated_key")
    assert run(connector.finish(params, begun.pending)).family_name == "MUSTERMANN"
    assert simulator.simulator.requests["jwks"] == 2


def test_a_wrong_client_secret_is_refused_at_the_token_endpoint(simulator, browser):
    connector = OidcConnector.from_settings(
        eid_settings(simulator.issuer, eid_client_secret="not-the-secret")
    )
    params, begun = identify(connector, browser)
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidInvalidResponse) and failure.reason == "token_refused"


def test_a_callback_with_another_state_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    failure = failure_of(connector, {**params, "state": "forged"}, begun.pending)
    assert isinstance(failure, EidStateInvalid) and failure.reason == "state_mismatch"


def test_a_callback_without_state_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    del params["state"]
    assert isinstance(failure_of(connector, params, begun.pending), EidStateInvalid)


def test_a_callback_of_another_identification_is_refused(connector, browser):
    params, _begun = identify(connector, browser)
    _other_params, other = identify(connector, browser)
    assert isinstance(failure_of(connector, params, other.pending), EidStateInvalid)


def test_a_flow_started_with_another_eid_service_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    moved = dataclasses.replace(begun.pending, issuer="https://eid.example.de")
    failure = failure_of(connector, params, moved)
    assert isinstance(failure, EidStateInvalid) and failure.reason == "other_upstream"


def test_a_callback_naming_another_issuer_is_a_mix_up(connector, browser):
    params, begun = identify(connector, browser)
    failure = failure_of(connector, {**params, "iss": "https://evil.example"}, begun.pending)
    assert isinstance(failure, EidInvalidResponse) and failure.reason == "wrong_iss_parameter"


def test_a_callback_without_the_issuer_it_promised_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    del params["iss"]
    failure = failure_of(connector, params, begun.pending)
    assert failure.reason == "missing_iss_parameter"


def test_a_code_redeemed_twice_is_refused_the_second_time(connector, browser):
    params, begun = identify(connector, browser)
    run(connector.finish(params, begun.pending))
    failure = failure_of(connector, params, begun.pending)
    assert isinstance(failure, EidInvalidResponse) and failure.reason == "token_refused"


def test_a_callback_with_neither_code_nor_error_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    del params["code"]
    assert failure_of(connector, params, begun.pending).reason == "no_code"


def test_a_wrong_code_verifier_is_refused(connector, browser):
    params, begun = identify(connector, browser)
    tampered = dataclasses.replace(begun.pending, code_verifier="x" * 64)
    assert failure_of(connector, params, tampered).reason == "token_refused"


def test_a_required_level_the_upstream_did_not_reach_is_refused(simulator, browser):
    connector = OidcConnector.from_settings(
        eid_settings(simulator.issuer, eid_acr="http://eidas.europa.eu/LoA/substantial")
    )
    params, begun = identify(connector, browser)
    assert failure_of(connector, params, begun.pending).reason == "wrong_acr"


def test_an_id_token_expired_by_our_clock_is_refused(simulator, browser, clock):
    connector = OidcConnector.from_settings(eid_settings(simulator.issuer), clock.now)
    params, begun = identify(connector, browser)
    clock.advance(timedelta(minutes=10))
    assert failure_of(connector, params, begun.pending).reason == "expired"
