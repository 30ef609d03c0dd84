"""A started identification is kept server-side, bound to the browser that started it
(its cookie names the flow), and finished once only, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from idp.eid.connector import PendingEid
from idp.eid.errors import EidStateInvalid
from idp.eid.pending import remember, take
from tests.conftest import together
from tests.eid.conftest import identify, run


def pending(state: str = "the-state") -> PendingEid:
    return PendingEid(
        connector="oidc",
        issuer="https://eid.example.de",
        state=state,
        redirect_uri="https://id.example.de/eid/callback",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        nonce="the-nonce",
        code_verifier="the-verifier",
    )


def started(db, value: PendingEid | None = None, **options) -> str:
    with db.unit_of_work() as uow:
        return remember(uow, value or pending(), minutes=15, **options)


def taking(db, flow_id: str | None, state: str | None):
    with db.unit_of_work() as uow:
        return take(uow, flow_id, state)


def refusal(db, flow_id: str | None, state: str | None) -> str:
    with pytest.raises(EidStateInvalid) as failure:
        taking(db, flow_id, state)
    return failure.value.reason


def test_a_taken_flow_gives_back_what_was_kept(db):
    flow_id = started(db, return_to="/authorize?x=1", data={"purpose": "upgrade"})
    taken = taking(db, flow_id, "the-state")
    assert taken.pending == pending()
    assert taken.return_to == "/authorize?x=1"
    assert taken.data == {"purpose": "upgrade"}
    assert taken.account_id is None


def test_a_state_is_finished_once_only(db):
    flow_id = started(db)
    taking(db, flow_id, "the-state")
    assert refusal(db, flow_id, "the-state") == "replayed"


def test_another_browser_has_no_flow_to_finish(db):
    started(db)
    assert refusal(db, None, "the-state") == "no_flow"
    assert refusal(db, "another-browsers-flow", "the-state") == "no_flow"


def test_a_forged_state_neither_finishes_nor_spends_the_flow(db):
    flow_id = started(db)
    assert refusal(db, flow_id, "forged") == "state_mismatch"
    assert refusal(db, flow_id, None) == "state_mismatch"
    assert taking(db, flow_id, "the-state").pending.state == "the-state"


def test_a_flow_past_its_minutes_cannot_be_finished(db, clock):
    flow_id = started(db)
    clock.advance(timedelta(minutes=16))
    assert refusal(db, flow_id, "the-state") == "no_flow"


def test_an_overlong_flow_id_is_no_flow(db):
    assert refusal(db, "x" * 10_000, "the-state") == "no_flow"


def test_of_many_simultaneous_callbacks_exactly_one_finishes(db):
    flow_id = started(db)

    def attempt():
        try:
            return taking(db, flow_id, "the-state")
        except EidStateInvalid as failure:
            return failure.reason

    outcomes = together([attempt] * 8)
    assert sum(not isinstance(outcome, str) for outcome in outcomes) == 1
    assert {outcome for outcome in outcomes if isinstance(outcome, str)} == {"replayed"}


def test_a_replayed_callback_never_reaches_the_eid_service(db, simulator, connector, browser):
    params, begun = identify(connector, browser)
    flow_id = started(db, begun.pending)
    result = run(connector.finish(params, taking(db, flow_id, params["state"]).pending))
    assert result.family_name == "MUSTERMANN"
    assert refusal(db, flow_id, params["state"]) == "replayed"
    assert simulator.simulator.requests["token"] == 1
