"""Second factors against a real database: TOTP, recovery codes, passkeys, binding."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

import idp.clock
from idp import assurance
from idp.accounts import factors, passkeys, recovery_codes, sessions, totp
from idp.accounts.factors import FactorError, TooManyAttempts
from idp.db.models import Account, RecoveryCode, SecondFactor
from idp.keys.secret import CodeDigests
from idp.keys.secretbox import SecretBox, SecretBoxError
from tests.assurance import factories
from tests.assurance.authenticator import SoftAuthenticator

ISSUER = "http://127.0.0.1:8000"
BOX = SecretBox(secrets.token_bytes(32))
DIGESTS = CodeDigests(secrets.token_bytes(32))


def _enrol_totp(session, owner, binding="low_session"):
    enrolment = totp.begin(session, owner, BOX, ISSUER)
    code = pyotp.TOTP(enrolment.secret).at(idp.clock.now(session))
    factor = totp.confirm(session, owner, enrolment.flow_id, code, BOX, binding)
    return enrolment.secret, factor


def _next_code(secret: str, clock) -> str:
    """The code of the next time step (the current one was spent at enrolment)."""
    clock.advance(timedelta(seconds=totp.STEP))
    return pyotp.TOTP(secret).at(clock.now())


def test_totp_enrolment_offers_a_qr_code_and_the_key_to_type(db):
    with db.unit_of_work() as session:
        enrolment = totp.begin(session, factories.account(session), BOX, ISSUER)
    assert enrolment.qr_svg.startswith("<svg")
    assert enrolment.uri.startswith("otpauth://totp/")
    assert f"secret={enrolment.secret}" in enrolment.uri


def test_totp_enrolment_needs_a_right_first_code(db, clock):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        enrolment = totp.begin(session, owner, BOX, ISSUER)
        wrong = f"{(int(pyotp.TOTP(enrolment.secret).at(clock.now())) + 1) % 1000000:06d}"
        with pytest.raises(FactorError):
            totp.confirm(session, owner, enrolment.flow_id, wrong, BOX, "low_session")
        assert factors.factors(session, owner.id) == []


def test_the_totp_seed_is_stored_only_sealed_and_only_for_its_account(db):
    with db.unit_of_work() as session:
        secret, factor = _enrol_totp(session, factories.account(session))
        sealed = factor.totp_secret
        owner_id = factor.account_id
    assert secret.encode() not in sealed
    assert BOX.open(sealed, f"totp:{owner_id}") == secret.encode()
    with pytest.raises(SecretBoxError):
        BOX.open(sealed, f"totp:{owner_id + 1}")


def test_a_totp_code_is_accepted_once_and_its_replay_refused(db, clock):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        secret, _ = _enrol_totp(session, owner)
        code = _next_code(secret, clock)
        assert totp.verify(session, owner, code, BOX) is not None
        assert totp.verify(session, owner, code, BOX) is None


def test_the_code_used_at_enrolment_cannot_be_replayed(db, clock):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        enrolment = totp.begin(session, owner, BOX, ISSUER)
        code = pyotp.TOTP(enrolment.secret).at(clock.now())
        totp.confirm(session, owner, enrolment.flow_id, code, BOX, "low_session")
        assert totp.verify(session, owner, code, BOX) is None


def _wrong(secret: str, clock) -> str:
    """A code that matches no time step in the accepted window."""
    valid = {pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=d)) for d in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def test_five_wrong_totp_codes_pause_the_factor(db, clock):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        secret, _ = _enrol_totp(session, owner)
        for _ in range(factors.MAX_FAILURES):
            assert totp.verify(session, owner, _wrong(secret, clock), BOX) is None
        with pytest.raises(TooManyAttempts):
            totp.verify(session, owner, _next_code(secret, clock), BOX)
        clock.advance(factors.LOCK)
        assert totp.verify(session, owner, _next_code(secret, clock), BOX) is not None


def test_recovery_codes_are_ten_single_use_digests(db):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        codes = recovery_codes.generate(session, owner, "low_session", DIGESTS)
        stored = session.scalars(select(RecoveryCode.code_digest)).all()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(digest) == 32 for digest in stored)
    assert not any(code.replace("-", "").encode() in b"".join(stored) for code in codes)
    with db.unit_of_work() as session:
        owner = session.get(Account, session.scalars(select(SecondFactor)).one().account_id)
        typed = " " + codes[3].upper().replace("-", " ") + " "
        assert recovery_codes.use(session, owner, typed, DIGESTS) is not None
        assert recovery_codes.use(session, owner, codes[3], DIGESTS) is None
        assert recovery_codes.remaining(session, owner.id) == 9


def test_a_new_set_of_recovery_codes_replaces_the_old_one(db):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        old = recovery_codes.generate(session, owner, "low_session", DIGESTS)
        recovery_codes.generate(session, owner, "low_session", DIGESTS)
        assert recovery_codes.use(session, owner, old[0], DIGESTS) is None
        assert recovery_codes.remaining(session, owner.id) == 10


def test_a_passkey_registers_and_then_authenticates(db):
    authenticator = SoftAuthenticator()
    _, origin = passkeys.relying_party(ISSUER)
    with db.unit_of_work() as session:
        owner = factories.account(session)
        flow_id, options = passkeys.begin_registration(session, owner, ISSUER)
        factor = passkeys.finish_registration(
            session, owner, flow_id, authenticator.create(options, origin), ISSUER, "low_session"
        )
        assert factor.credential_id == authenticator.credential_id
        flow_id, options = passkeys.begin_authentication(session, owner, ISSUER)
        used = passkeys.finish_authentication(
            session, owner, flow_id, authenticator.get(options, origin), ISSUER
        )
        assert used.id == factor.id and used.sign_count == 1


@pytest.mark.parametrize("synced", [False, True])
def test_a_passkey_without_attestation_is_recorded_as_a_software_key(db, synced):
    # A device-bound credential was recorded as `hwk`; without attestation nothing proves
    # it is held in hardware (this one is software).
    authenticator = SoftAuthenticator(synced=synced)
    _, origin = passkeys.relying_party(ISSUER)
    with db.unit_of_work() as session:
        owner = factories.account(session)
        flow_id, options = passkeys.begin_registration(session, owner, ISSUER)
        factor = passkeys.finish_registration(
            session, owner, flow_id, authenticator.create(options, origin), ISSUER, "low_session"
        )
        assert factor.amr == "swk"


def _registered(session, authenticator):
    _, origin = passkeys.relying_party(ISSUER)
    owner = factories.account(session)
    flow_id, options = passkeys.begin_registration(session, owner, ISSUER)
    passkeys.finish_registration(
        session, owner, flow_id, authenticator.create(options, origin), ISSUER, "low_session"
    )
    return owner, origin


def test_a_passkey_whose_counter_does_not_grow_is_refused_as_cloned(db):
    authenticator = SoftAuthenticator()
    with db.unit_of_work() as session:
        owner, origin = _registered(session, authenticator)
        flow_id, options = passkeys.begin_authentication(session, owner, ISSUER)
        passkeys.finish_authentication(
            session, owner, flow_id, authenticator.get(options, origin), ISSUER
        )
        flow_id, options = passkeys.begin_authentication(session, owner, ISSUER)
        with pytest.raises(FactorError):
            passkeys.finish_authentication(
                session, owner, flow_id, authenticator.get(options, origin, count_up=False), ISSUER
            )


def test_a_passkey_answer_for_another_origin_is_refused(db):
    authenticator = SoftAuthenticator()
    with db.unit_of_work() as session:
        owner, _ = _registered(session, authenticator)
        flow_id, options = passkeys.begin_authentication(session, owner, ISSUER)
        with pytest.raises(FactorError):
            passkeys.finish_authentication(
                session, owner, flow_id, authenticator.get(options, "http://evil.test"), ISSUER
            )


def test_a_passkey_challenge_is_answered_only_once(db):
    authenticator = SoftAuthenticator()
    with db.unit_of_work() as session:
        owner, origin = _registered(session, authenticator)
        flow_id, options = passkeys.begin_authentication(session, owner, ISSUER)
        answer = authenticator.get(options, origin)
        passkeys.finish_authentication(session, owner, flow_id, answer, ISSUER)
        with pytest.raises(FactorError, match="expired"):
            passkeys.finish_authentication(session, owner, flow_id, answer, ISSUER)


def test_a_factor_added_in_a_low_session_is_bound_low_and_in_a_high_session_high(db, settings):
    policy = assurance.load_policy(settings)
    with db.unit_of_work() as session:
        owner = factories.account(session, proofing="high")
        _, login = factories.login(session, owner, settings)
        assert factors.binding_for(session, owner, login, policy) == "low_session"
        _, first = _enrol_totp(session, owner, binding="proofing")
        sessions.add_method(login, "otp", binding=first.binding)
        assert factors.binding_for(session, owner, login, policy) == "high_session"


def test_proofing_binds_the_factors_proven_during_it_and_no_other(db):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        _, app = _enrol_totp(session, owner)
        recovery_codes.generate(session, owner, "low_session", DIGESTS)
        assert factors.enrolled_bindings(session, owner.id) == {"low_session"}
        assert factors.bind_at_proofing(session, owner.id, [app.id]) == 1
        assert factors.enrolled_bindings(session, owner.id) == {"proofing", "low_session"}


def test_the_factors_used_in_a_session_since_a_moment_are_those_proofing_may_bind(
    db, settings, clock
):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        _, login = factories.login(session, owner, settings)
        sessions.add_method(login, "otp", binding="low_session", factor=7)
        clock.advance(timedelta(minutes=1))
        since = clock.now()
        sessions.add_method(login, "hwk", binding="low_session", factor=9)
        assert factors.used_in_session(login, since) == [9]


def test_a_spent_set_of_recovery_codes_is_no_usable_factor(db):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        for code in recovery_codes.generate(session, owner, "proofing", DIGESTS):
            recovery_codes.use(session, owner, code, DIGESTS)
        assert factors.enrolled_bindings(session, owner.id) == set()
