"""The registry of authenticators: what pages offer and how an answer is checked."""

from __future__ import annotations

import pyotp
import pytest

from idp.accounts import recovery_codes, totp
from idp.accounts.authenticators import REGISTRY, Authenticator, Registry
from idp.accounts.factors import FactorError
from idp.db.models import Account
from tests.assurance import factories


def _keys(services):
    return services.authenticator_keys


def test_every_second_factor_names_its_amr_and_its_page_part():
    names = {method.name for method in REGISTRY if method.raises_level}
    assert names == {"totp", "passkey", "recovery"}
    for method in REGISTRY:
        assert method.amr in {"pwd", "otp", "hwk", "swk"}
        if method.raises_level:
            assert method.check is not None and method.factor_kind


def test_a_name_is_registered_once():
    registry = Registry()
    registry.register(Authenticator("wallet", "hwk", interaction="redirect", start="/x"))
    with pytest.raises(ValueError, match="wallet"):
        registry.register(Authenticator("wallet", "swk"))


def test_offered_follows_the_account_s_factors_and_the_bindings_that_count(db, settings, services):
    with db.unit_of_work() as session:
        owner = factories.account(session, proofing="high")
        assert REGISTRY.offered(session, owner.id) == ()
        enrolment = totp.begin(session, owner, services.secret_box, settings.issuer)
        code = pyotp.TOTP(enrolment.secret).now()
        totp.confirm(session, owner, enrolment.flow_id, code, services.secret_box, "low_session")
        recovery_codes.generate(session, owner, "proofing", services.code_digests)
        owner_id = owner.id
    with db.unit_of_work() as session:
        assert [m.name for m in REGISTRY.offered(session, owner_id)] == ["totp", "recovery"]
        only_proofing = REGISTRY.offered(session, owner_id, frozenset({"proofing"}))
        assert [m.name for m in only_proofing] == ["recovery"]


def test_recovery_codes_are_not_offered_once_all_are_spent(db, settings, services):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        codes = recovery_codes.generate(session, owner, "low_session", services.code_digests)
        owner_id = owner.id
    for code in codes:
        with db.unit_of_work() as session:
            owner = session.get(Account, owner_id)
            REGISTRY.check(session, owner, "recovery", {"code": code}, _keys(services))
    with db.unit_of_work() as session:
        assert REGISTRY.offered(session, owner_id) == ()


def test_check_dispatches_by_name_and_refuses_unknown_or_wrong_answers(db, settings, services):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        codes = recovery_codes.generate(session, owner, "low_session", services.code_digests)
        keys = _keys(services)
        with pytest.raises(FactorError):
            REGISTRY.check(session, owner, "sms", {"code": codes[0]}, keys)
        with pytest.raises(FactorError):
            REGISTRY.check(session, owner, "password", {"password": "x"}, keys)
        with pytest.raises(FactorError):
            REGISTRY.check(session, owner, "recovery", {"code": "0000-0000"}, keys)
        factor = REGISTRY.check(session, owner, "recovery", {"code": codes[0]}, keys)
        assert factor.kind == "recovery_codes" and factor.amr == "otp"


def test_the_login_page_offers_every_way_in_the_registry_names(client, monkeypatch):
    page = client.get("/login", params={"return_to": "/account"})
    assert 'action="/login"' in page.text
    assert 'action="/wallet/start"' not in page.text
    wallet = Authenticator(
        "wallet",
        "hwk",
        interaction="redirect",
        signs_in=True,
        label="login.submit",
        start="/wallet/start",
    )
    monkeypatch.setitem(REGISTRY._by_name, "wallet", wallet)
    page = client.get("/login", params={"return_to": "/account"})
    assert page.status_code == 200
    assert 'action="/login"' in page.text  # the password form stays
    form = page.text.split('action="/wallet/start"', 1)[1].split("</form>", 1)[0]
    assert 'name="return_to" value="/account"' in form
