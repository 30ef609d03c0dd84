"""Verified identity data released as claims (OpenID Connect for Identity Assurance 1.0)."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from idp import assurance
from idp.accounts import factors, proofing, totp
from idp.assurance.verified_claims import current_identity, identity_claims
from idp.db.models import Account
from idp.keys.secretbox import SecretBox
from idp.oidc import tokens
from tests.assurance import factories
from tests.oidc import factories as oidc_factories

REQUEST = {
    "verified_claims": {
        "verification": {"trust_framework": None, "time": None},
        "claims": {"given_name": None, "birthdate": {"essential": True}},
    }
}


def _proofed(session, method="pipp", **values):
    owner = factories.account(session)
    owner.given_name = "Selbst"  # self-asserted, must never appear as verified
    proofing.record_proofing(
        session, owner, factories.verified_identity(session, method, **values), proven_factors=[]
    )
    session.flush()
    return owner


def test_nothing_is_released_without_the_identity_scope(db):
    with db.unit_of_work() as session:
        owner = _proofed(session)
        identity = current_identity(session, owner.id)
        assert identity_claims(identity, ["openid", "profile"], None, target="userinfo") == {}


def test_userinfo_gets_every_verified_claim_with_its_evidence(db):
    with db.unit_of_work() as session:
        owner = _proofed(session)
        claims = identity_claims(
            current_identity(session, owner.id), ["openid", "identity"], None, target="userinfo"
        )
    assert claims["given_name"] == "Erika" and claims["birthdate"] == "1964-08-12"
    assert claims["address"]["locality"] == "Köln"
    verification = claims["verified_claims"]["verification"]
    assert (verification["trust_framework"], verification["assurance_level"]) == ("eidas", "high")
    evidence = verification["evidence"][0]
    assert evidence["method"] == "pipp"
    assert evidence["check_details"][0]["check_method"] == "vpip"
    assert evidence["check_details"][0]["organization"] == "Bürgerbüro Mitte"
    assert evidence["document_details"]["type"] == "idcard"
    assert "Selbst" not in repr(claims)


def test_an_eid_verification_names_the_eid_as_evidence(db):
    with db.unit_of_work() as session:
        owner = _proofed(session, "eid")
        claims = identity_claims(
            current_identity(session, owner.id), ["identity"], None, target="userinfo"
        )
    evidence = claims["verified_claims"]["verification"]["evidence"][0]
    assert (evidence["method"], evidence["check_details"][0]["check_method"]) == ("eid", "vcrypt")


def test_a_verified_claims_request_gets_exactly_what_it_asked_for(db):
    with db.unit_of_work() as session:
        owner = _proofed(session)
        claims = identity_claims(
            current_identity(session, owner.id), ["identity"], REQUEST, target="id_token"
        )
    assert set(claims) == {"verified_claims"}
    assert claims["verified_claims"]["claims"] == {"given_name": "Erika", "birthdate": "1964-08-12"}
    assert set(claims["verified_claims"]["verification"]) == {"trust_framework", "time"}


def test_a_trust_framework_we_do_not_meet_gets_no_verified_claims(db):
    request = {
        "verified_claims": {
            "verification": {"trust_framework": {"value": "de_aml"}},
            "claims": {"given_name": None},
        }
    }
    with db.unit_of_work() as session:
        owner = _proofed(session)
        assert (
            identity_claims(
                current_identity(session, owner.id), ["identity"], request, target="userinfo"
            )
            == {}
        )


def test_the_id_token_gets_verified_claims_only_when_asked(db):
    with db.unit_of_work() as session:
        owner = _proofed(session)
        identity = current_identity(session, owner.id)
        assert identity_claims(identity, ["identity"], None, target="id_token") == {}


def test_self_asserted_data_is_never_presented_as_verified(db):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        owner.given_name = "Selbst"
        assert current_identity(session, owner.id) is None
        assert identity_claims(None, ["identity"], REQUEST, target="userinfo") == {}


def test_a_revoked_verification_is_no_longer_released(db, clock):
    with db.unit_of_work() as session:
        owner = _proofed(session)
        current_identity(session, owner.id).revoked_at = clock.now()
        session.flush()
        assert current_identity(session, owner.id) is None


def test_proofing_raises_the_account_and_binds_only_the_factor_proven_during_it(
    db, settings, clock
):
    box = SecretBox(b"k" * 32)
    with db.unit_of_work() as session:
        owner = factories.account(session)
        apps = []
        for label in ("the citizen's", "planted with a stolen password"):
            enrolment = totp.begin(session, owner, box, settings.issuer)
            apps.append(
                totp.confirm(
                    session,
                    owner,
                    enrolment.flow_id,
                    pyotp.TOTP(enrolment.secret).at(clock.now()),
                    box,
                    "low_session",
                    label,
                )
            )
        clock.advance(timedelta(seconds=1))
        proofing.record_proofing(
            session, owner, factories.verified_identity(session), proven_factors=[apps[0].id]
        )
        assert owner.proofing_level == "high"
        assert [(f.label, f.binding) for f in factors.factors(session, owner.id)] == [
            ("the citizen's", "proofing"),
            ("planted with a stolen password", "low_session"),
        ]


def test_discovery_advertises_exactly_the_identity_assurance_that_is_released(client, db):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["verified_claims_supported"] is True
    assert "identity" in metadata["scopes_supported"]
    with db.unit_of_work() as session:
        released = [
            identity_claims(
                current_identity(session, _proofed(session, method).id),
                ["identity"],
                None,
                target="userinfo",
            )["verified_claims"]
            for method in ("eid", "pipp")
        ]
    for verified in released:
        verification = verified["verification"]
        assert verification["trust_framework"] in metadata["trust_frameworks_supported"]
        for evidence in verification["evidence"]:
            assert evidence["type"] in metadata["evidence_supported"]
            assert evidence["document_details"]["type"] in metadata["documents_supported"]
            for check in evidence["check_details"]:
                assert check["check_method"] in metadata["documents_check_methods_supported"]
        assert set(verified["claims"]) <= set(metadata["claims_in_verified_claims_supported"])


@pytest.mark.parametrize(
    "values",
    [
        {"trust_framework": "de_aml"},
        {"assurance_level": "very_high"},
        {"document_type": "library_card"},
    ],
)
def test_evidence_that_discovery_does_not_name_is_never_recorded(db, values):
    with db.unit_of_work() as session:
        owner = factories.account(session)
        with pytest.raises(ValueError, match="unsupported"):
            proofing.record_proofing(
                session, owner, factories.verified_identity(session, **values), proven_factors=[]
            )
        assert owner.proofing_level == "low"


def _access_token(services, db, owner_id, scope, acr=assurance.HIGH):
    """An access token of a login's grant at ``acr``, as the code exchange issues it."""
    info = oidc_factories.client(db, scopes=["openid", "profile", "identity"])
    context = tokens.GrantContext(owner_id, None, None, db.clock.now(), acr, ["pwd", "otp"], None)
    with db.unit_of_work() as session:
        grant = tokens.start_grant(session, services.settings, info.client_id, scope, context)
        account = session.get(Account, owner_id)
        sub = services.oidc.subject(account, services.clients.get(info.client_id))
        token, _ = services.oidc.tokens.access_token(info.client_id, sub, scope, grant=grant)
    return token, grant.id


def test_userinfo_over_http_releases_verified_claims_until_the_grant_is_revoked(
    client, db, services
):
    with db.unit_of_work() as session:
        owner_id = _proofed(session).id
    token, grant_id = _access_token(services, db, owner_id, "openid profile identity")
    bearer = {"Authorization": f"Bearer {token}"}
    answer = client.get("/userinfo", headers=bearer)
    assert answer.status_code == 200
    body = answer.json()
    assert body["given_name"] == "Erika", "verified names override self-asserted ones"
    assert body["verified_claims"]["verification"]["trust_framework"] == "eidas"
    with db.unit_of_work() as session:
        tokens.revoke_grant(session, grant_id, "test")
    assert client.get("/userinfo", headers=bearer).status_code == 401
