"""The acr policy, row by row: levels, freshness, requests, decisions, amr."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from idp.assurance import (
    HIGH,
    LOW,
    SUBSTANTIAL,
    Authentication,
    Policy,
    Requirement,
    SessionFacts,
    amr,
    evaluate,
    load_policy,
    refreshed_acr,
    requested_acr,
    session_acr,
    session_facts,
)
from idp.settings import Settings, SettingsError

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
POLICY = Policy(max_age={LOW: None, SUBSTANTIAL: timedelta(hours=4), HIGH: timedelta(hours=1)})


def facts(proofing: str, *used: str, ago: int = 0, enrolled: tuple[str, ...] = ()) -> SessionFacts:
    """A session that used ``used`` ("pwd", "otp@proofing", ...) ``ago`` minutes ago."""
    authentications = []
    for item in used:
        method, _, binding = item.partition("@")
        authentications.append(
            Authentication(method, NOW - timedelta(minutes=ago), binding or None)
        )
    return SessionFacts(proofing, tuple(authentications), frozenset(enrolled), NOW)


@pytest.mark.parametrize(
    ("proofing", "used", "expected"),
    [
        # Default table, row 1: password alone is low, whatever the proofing.
        ("low", ["pwd"], LOW),
        ("substantial", ["pwd"], LOW),
        ("high", ["pwd"], LOW),
        # Row 2: a second factor bound at proofing or in a high session lifts a proofed account.
        ("high", ["pwd", "otp@proofing"], HIGH),
        ("high", ["pwd", "otp@high_session"], HIGH),
        ("high", ["pwd", "hwk@proofing"], HIGH),
        ("high", ["pwd", "swk@high_session"], HIGH),
        # A second factor added in a low session never lifts the session above low.
        ("high", ["pwd", "otp@low_session"], LOW),
        ("high", ["pwd", "hwk@low_session"], LOW),
        ("low", ["pwd", "otp@low_session"], LOW),
        # A bound factor does not raise an account that is not proofed high.
        ("low", ["pwd", "otp@proofing"], LOW),
        # Row 3: the eID on a proofed account.
        ("high", ["eid"], HIGH),
        # Row 4: the eID's first use proofs the account in the same step.
        ("low", ["eid"], HIGH),
        ("none", ["eid"], HIGH),
        ("substantial", ["eid"], HIGH),
        # Substantial proofing (reserved for other means) with a bound factor.
        ("substantial", ["pwd", "otp@proofing"], SUBSTANTIAL),
        ("substantial", ["pwd", "otp@low_session"], LOW),
        # Below the table: email not verified, or a second factor without the password.
        ("none", ["pwd"], None),
        ("none", ["pwd", "otp@proofing"], None),
        ("high", ["otp@proofing"], None),
        ("high", [], None),
    ],
)
def test_session_acr_follows_the_default_table(proofing, used, expected):
    assert session_acr(facts(proofing, *used), POLICY) == expected


@pytest.mark.parametrize(
    ("used", "ago", "expected"),
    [
        (["pwd", "otp@proofing"], 59, HIGH),
        (["pwd", "otp@proofing"], 61, SUBSTANTIAL),
        (["pwd", "otp@proofing"], 241, LOW),
        (["eid"], 30, HIGH),
        (["eid"], 90, SUBSTANTIAL),
        (["eid"], 600, LOW),
        (["pwd"], 600, LOW),
    ],
)
def test_a_level_older_than_its_maximum_age_counts_lower(used, ago, expected):
    assert session_acr(facts("high", *used, ago=ago), POLICY) == expected


def test_a_fresh_second_factor_renews_a_high_level_reached_earlier():
    session = SessionFacts(
        "high",
        (
            Authentication("pwd", NOW - timedelta(hours=3)),
            Authentication("otp", NOW - timedelta(hours=2), "proofing"),
            Authentication("otp", NOW - timedelta(minutes=1), "proofing"),
        ),
        frozenset(),
        NOW,
    )
    assert session_acr(session, POLICY) == HIGH


def test_without_maximum_ages_a_high_level_lasts_as_long_as_the_session():
    assert session_acr(facts("high", "pwd", "otp@proofing", ago=600), Policy()) == HIGH


@pytest.mark.parametrize(
    ("acr_values", "claims", "defaults", "minimum", "expected"),
    [
        (None, None, (), None, Requirement()),
        (f"{HIGH} {SUBSTANTIAL}", None, (), None, Requirement((HIGH, SUBSTANTIAL))),
        ("STORK-QAA-Level-4", None, (), None, Requirement(("STORK-QAA-Level-4",))),
        ("urn:unknown " + LOW, None, (), None, Requirement((LOW,))),
        ("urn:unknown", None, (), None, Requirement(unknown=True)),
        (
            LOW,
            {"id_token": {"acr": {"essential": True, "values": [HIGH]}}},
            (),
            None,
            Requirement((HIGH,), essential=True),
        ),
        (
            None,
            {"id_token": {"acr": {"essential": True, "value": SUBSTANTIAL}}},
            (),
            None,
            Requirement((SUBSTANTIAL,), essential=True),
        ),
        (HIGH, {"id_token": {"acr": {"essential": True}}}, (), None, Requirement((HIGH,), True)),
        (None, {"id_token": {"acr": {"essential": True}}}, (), None, Requirement((LOW,), True)),
        (None, {"id_token": {"acr": None}}, (), None, Requirement()),
        (None, {"userinfo": {"acr": {"essential": True}}}, (), None, Requirement()),
        (None, None, (SUBSTANTIAL,), None, Requirement((SUBSTANTIAL,))),
        (HIGH, None, (SUBSTANTIAL,), None, Requirement((HIGH,))),
        (None, None, (), "STORK-QAA-Level-3", Requirement(minimum=SUBSTANTIAL)),
    ],
)
def test_requested_acr_reads_claims_then_acr_values_then_client_defaults(
    acr_values, claims, defaults, minimum, expected
):
    assert requested_acr(acr_values, claims, defaults, minimum) == expected


@pytest.mark.parametrize(
    ("requirement", "session", "status", "acr", "required", "missing"),
    [
        # Nothing asked: the session's own level.
        (Requirement(), facts("high", "pwd"), "met", LOW, False, ()),
        (Requirement(), facts("none", "pwd"), "met", None, False, ()),
        # Met: the token answers with the value asked for, also for aliases and lower levels.
        (Requirement((HIGH,), True), facts("high", "pwd", "otp@proofing"), "met", HIGH, False, ()),
        (
            Requirement(("STORK-QAA-Level-4",), True),
            facts("high", "pwd", "otp@proofing"),
            "met",
            "STORK-QAA-Level-4",
            False,
            (),
        ),
        (
            Requirement((SUBSTANTIAL,)),
            facts("high", "pwd", "otp@proofing"),
            "met",
            SUBSTANTIAL,
            False,
            (),
        ),
        (
            Requirement((HIGH, SUBSTANTIAL)),
            facts("high", "pwd", "otp@proofing"),
            "met",
            HIGH,
            False,
            (),
        ),
        # A proofed account with a bound factor: ask for the second factor.
        (
            Requirement((HIGH,), True),
            facts("high", "pwd", enrolled=("proofing",)),
            "step_up",
            LOW,
            True,
            ("second_factor",),
        ),
        (
            Requirement((HIGH,), True),
            facts("high", "pwd", "otp@proofing", ago=90, enrolled=("proofing",)),
            "step_up",
            SUBSTANTIAL,
            True,
            ("second_factor",),
        ),
        # Proofed, but the only factor was added in a low session: eID or in person.
        (
            Requirement((HIGH,), True),
            facts("high", "pwd", "otp@low_session", enrolled=("low_session",)),
            "step_up",
            LOW,
            True,
            ("eid", "in_person"),
        ),
        # Not proofed: eID or in person, never the second factor.
        (
            Requirement((HIGH,), True),
            facts("low", "pwd", enrolled=("low_session",)),
            "step_up",
            LOW,
            True,
            ("eid", "in_person"),
        ),
        (
            Requirement((SUBSTANTIAL,), True),
            facts("low", "pwd"),
            "step_up",
            LOW,
            True,
            ("eid", "in_person"),
        ),
        # Voluntary: a step-up is offered, but the flow may go on with the best achievable.
        (
            Requirement((HIGH,)),
            facts("high", "pwd", enrolled=("proofing",)),
            "step_up",
            LOW,
            False,
            ("second_factor",),
        ),
        # The client's floor is essential even when the request is voluntary.
        (
            Requirement((HIGH,), minimum=SUBSTANTIAL),
            facts("high", "pwd", enrolled=("proofing",)),
            "step_up",
            LOW,
            True,
            ("second_factor",),
        ),
        (
            Requirement(minimum=LOW),
            facts("none", "pwd"),
            "step_up",
            None,
            True,
            ("eid", "in_person"),
        ),
        # Only unknown values, essential: cannot be met.
        (Requirement(essential=True, unknown=True), facts("high", "pwd"), "unmet", LOW, True, ()),
    ],
)
def test_evaluate_decides_met_step_up_or_unmet(
    requirement, session, status, acr, required, missing
):
    decision = evaluate(requirement, session, POLICY)
    assert (decision.status, decision.acr, decision.required, decision.missing) == (
        status,
        acr,
        required,
        missing,
    )


def test_a_decision_that_is_not_met_explains_itself():
    decision = evaluate(Requirement((HIGH,), True), facts("low", "pwd"), POLICY)
    assert HIGH in decision.description
    assert "eID" in decision.description


def test_a_level_no_rule_reaches_is_unmet():
    policy = Policy.from_json(
        json.dumps([{"acr": LOW, "proofing": ["low"], "methods": ["pwd"]}]), {}
    )
    decision = evaluate(Requirement((HIGH,), True), facts("low", "pwd"), policy)
    assert (decision.status, decision.required) == ("unmet", True)
    assert HIGH in decision.description


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (["pwd"], ["pwd"]),
        (["pwd", "pwd"], ["pwd"]),
        (["pwd", "otp@proofing"], ["pwd", "otp", "mfa"]),
        (["pwd", "hwk@low_session"], ["pwd", "hwk", "mfa"]),
        (["eid"], ["eid", "mfa"]),
        (["otp@proofing", "hwk@proofing"], ["otp", "hwk"]),
    ],
)
def test_amr_lists_rfc_8176_methods_and_mfa_for_two_factors(used, expected):
    assert amr(facts("high", *used)) == expected


def test_session_facts_read_login_session_method_entries():
    entries = [
        {"method": "pwd", "at": NOW.isoformat()},
        {"method": "otp", "at": NOW.isoformat(), "binding": "proofing"},
    ]
    session = session_facts("high", entries, ["proofing"], NOW)
    assert session.authentications[1] == Authentication("otp", NOW, "proofing")
    assert session_acr(session, POLICY) == HIGH


def test_a_policy_table_from_json_replaces_the_default(tmp_path):
    table = tmp_path / "acr.json"
    table.write_text(
        json.dumps(
            [
                {"acr": LOW, "proofing": ["low", "high"], "methods": ["pwd"]},
                {
                    "acr": HIGH,
                    "proofing": ["high"],
                    "methods": ["pwd", "second_factor"],
                    "bindings": ["proofing", "high_session", "low_session"],
                },
            ]
        )
    )
    settings = Settings.from_env({"IDP_ACR_POLICY_FILE": str(table)})
    policy = load_policy(settings)
    assert session_acr(facts("high", "pwd", "otp@low_session"), policy) == HIGH
    assert policy.max_age[HIGH] == timedelta(minutes=settings.acr_high_max_age_minutes)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "not JSON"),
        ("[]", "non-empty"),
        ('[{"acr": "gold", "proofing": ["high"], "methods": ["pwd"]}]', "rule 1"),
        (
            json.dumps([{"acr": HIGH, "proofing": ["high"], "methods": ["second_factor"]}]),
            "bindings",
        ),
        (json.dumps([{"acr": LOW, "proofing": ["expert"], "methods": ["pwd"]}]), "proofing"),
    ],
)
def test_a_bad_policy_table_stops_the_start_naming_the_problem(tmp_path, content, problem):
    table = tmp_path / "acr.json"
    table.write_text(content)
    with pytest.raises(SettingsError, match="IDP_ACR_POLICY_FILE") as error:
        Settings.from_env({"IDP_ACR_POLICY_FILE": str(table)})
    assert problem in str(error.value)


def test_the_default_maximum_ages_come_from_settings():
    settings = Settings.from_env({"IDP_ACR_HIGH_MAX_AGE_MINUTES": "0"})
    assert load_policy(settings).max_age[HIGH] is None
    assert load_policy(Settings.from_env({})).max_age[HIGH] == timedelta(minutes=60)


def test_a_step_up_recorded_in_a_login_session_lifts_its_level(db, settings, clock):
    from idp.accounts.realms import CITIZEN
    from idp.accounts.sessions import add_method
    from idp.accounts.signin import PASSWORD, open_login_session
    from idp.db.models import Account, LoginSession

    with db.unit_of_work() as session:
        now = clock.now()
        account = Account(
            subject="s1",
            email="a@example.de",
            proofing_level="high",
            created_at=now,
            updated_at=now,
        )
        session.add(account)
        session.flush()
        opened = open_login_session(
            session,
            settings,
            CITIZEN,
            account.id,
            PASSWORD,
            ip=None,
            user_agent=None,
            replacing=None,
        )
        row = session.get_one(LoginSession, opened.id)
        policy = load_policy(settings)
        before = session_facts(account.proofing_level, row.methods, ["proofing"], clock.now())
        add_method(row, "otp", binding="proofing")
        after = session_facts(account.proofing_level, row.methods, ["proofing"], clock.now())
    assert (session_acr(before, policy), session_acr(after, policy)) == (LOW, HIGH)


def test_acr_values_supported_are_the_levels_the_table_reaches_and_their_aliases():
    assert Policy().acr_values_supported() == [
        LOW,
        SUBSTANTIAL,
        HIGH,
        "STORK-QAA-Level-1",
        "STORK-QAA-Level-2",
        "STORK-QAA-Level-3",
        "STORK-QAA-Level-4",
    ]
    only_low = Policy.from_json(
        json.dumps([{"acr": LOW, "proofing": ["low"], "methods": ["pwd"]}]), {}
    )
    assert only_low.acr_values_supported() == [LOW, "STORK-QAA-Level-1", "STORK-QAA-Level-2"]


UNLIMITED = Policy(max_age={LOW: None, SUBSTANTIAL: None, HIGH: None})
SESSION = timedelta(hours=12)


@pytest.mark.parametrize(
    ("granted", "session", "alive", "policy", "ago", "expected"),
    [
        # A live session: its level now, never above the grant's.
        (HIGH, ("high", "pwd", "otp@proofing"), True, POLICY, 30, HIGH),
        (HIGH, ("high", "pwd", "otp@proofing"), True, POLICY, 61, SUBSTANTIAL),
        (SUBSTANTIAL, ("high", "pwd", "otp@proofing"), True, POLICY, 5, SUBSTANTIAL),
        (HIGH, ("low", "pwd", "otp@proofing"), True, POLICY, 5, LOW),  # identification revoked
        # An ended session ages the same way, from its methods' times.
        (HIGH, ("high", "pwd", "otp@proofing"), False, POLICY, 30, HIGH),
        (HIGH, ("high", "pwd", "otp@proofing"), False, POLICY, 241, LOW),
        # Without maximum ages a level lasts as long as the session; ended, a session's length.
        (HIGH, ("high", "pwd", "otp@proofing"), True, UNLIMITED, 60 * 24, HIGH),
        (HIGH, ("high", "pwd", "otp@proofing"), False, UNLIMITED, 60 * 11, HIGH),
        (HIGH, ("high", "pwd", "otp@proofing"), False, UNLIMITED, 60 * 13, LOW),
        # No session row: the grant's level as reached at the login.
        (HIGH, None, False, POLICY, 30, HIGH),
        (HIGH, None, False, POLICY, 61, SUBSTANTIAL),
        (HIGH, None, False, UNLIMITED, 60 * 13, LOW),
        (LOW, None, False, POLICY, 60 * 24 * 29, LOW),
        (None, None, False, POLICY, 5, None),
        # An alias stays an alias.
        ("STORK-QAA-Level-4", None, False, POLICY, 61, "STORK-QAA-Level-3"),
        ("STORK-QAA-Level-4", None, False, POLICY, 30, "STORK-QAA-Level-4"),
    ],
)
def test_a_refreshed_token_carries_the_sessions_level_now_or_the_grants_aged(
    granted, session, alive, policy, ago, expected
):
    used = facts(session[0], *session[1:], ago=ago) if session else None
    login_at = NOW - timedelta(minutes=ago)
    assert (
        refreshed_acr(granted, used, login_at, NOW, policy, session_alive=alive, longest=SESSION)
        == expected
    )
