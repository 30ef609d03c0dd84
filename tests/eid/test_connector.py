"""The OpenID Connect connector against the eID simulator over real HTTP: start, the
citizen's choice at the simulator, finish; the card's data under our names."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from joserfc.jwk import ECKey

from idp.assurance import verified_claims
from idp.eid import connector_for
from idp.eid.connector import DOCUMENT_TYPES, Address, Place, pseudonym_digest
from idp.eid.oidc import OidcConnector
from idp.settings import Settings
from tests.eid.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    eid_settings,
    identify,
    run,
    secret_client,
)


def test_erika_mustermann_arrives_with_the_test_cards_data(connector, browser):
    params, begun = identify(connector, browser, "Erika Mustermann")
    result = run(connector.finish(params, begun.pending))
    assert result.issuer == connector.issuer
    assert result.family_name == "MUSTERMANN"
    assert result.given_name == "ERIKA"
    assert result.birth_family_name == "GABLER"
    assert result.birthdate == "1964-08-12"
    assert result.place_of_birth == Place(locality="BERLIN")
    assert result.address == Address(
        street_address="HEIDESTRASSE 17", postal_code="51147", locality="KÖLN", country="DEU"
    )
    assert result.nationalities == ("DEU",)
    assert result.document_type == "idcard"
    assert result.issuing_state == "D"
    assert result.academic_title is None
    assert result.acr == "http://eidas.europa.eu/LoA/high"
    assert result.pseudonym


def test_umlauts_and_the_doctoral_title_arrive_intact(connector, browser):
    params, begun = identify(connector, browser, "Dr. Jürgen Müller-Schönbäck")
    result = run(connector.finish(params, begun.pending))
    assert (result.academic_title, result.given_name, result.family_name) == (
        "DR.",
        "JÜRGEN",
        "MÜLLER-SCHÖNBÄCK",
    )
    assert result.place_of_birth == Place(locality="GÖTTINGEN")
    assert result.address is not None and result.address.street_address == "GRÜNER WEG 5"


def test_a_card_without_place_of_birth_gives_none(connector, browser):
    params, begun = identify(connector, browser, "Max Mustermann")
    result = run(connector.finish(params, begun.pending))
    assert result.place_of_birth is None
    assert result.birth_family_name is None
    assert result.birthdate == "1983-04-21"


def test_a_birth_name_is_the_birth_family_name(connector, browser):
    params, begun = identify(connector, browser, "Jonas Schneider")
    result = run(connector.finish(params, begun.pending))
    assert (result.family_name, result.birth_family_name) == ("SCHNEIDER", "WEBER")


def test_a_residence_permit_holder_keeps_her_nationality_and_her_names_letters(connector, browser):
    params, begun = identify(connector, browser, "Ayşe Yılmaz")
    result = run(connector.finish(params, begun.pending))
    assert (result.given_name, result.family_name) == ("AYŞE", "YILMAZ")
    assert result.place_of_birth == Place(locality="İZMİR")
    assert result.nationalities == ("TUR",)
    assert result.document_type == "residence_permit"
    assert result.issuing_state == "D"


def test_a_union_citizen_card_is_its_own_document_type(connector, browser):
    params, begun = identify(connector, browser, "Giulia Rossi")
    result = run(connector.finish(params, begun.pending))
    assert result.document_type == "union_citizen_card"
    assert result.nationalities == ("ITA",)


def test_the_pseudonym_is_stable_per_person_and_differs_between_persons(connector, browser):
    pseudonyms = []
    for person in ("Erika Mustermann", "Erika Mustermann", "Max Mustermann"):
        params, begun = identify(connector, browser, person)
        pseudonyms.append(run(connector.finish(params, begun.pending)).pseudonym)
    assert pseudonyms[0] == pseudonyms[1]
    assert pseudonyms[0] != pseudonyms[2]


def test_a_renewed_card_has_a_new_pseudonym_and_the_same_data(connector, browser):
    old_params, old_begun = identify(connector, browser, "Erika Mustermann")
    new_params, new_begun = identify(connector, browser, "Erika Mustermann", card="2")
    old = run(connector.finish(old_params, old_begun.pending))
    new = run(connector.finish(new_params, new_begun.pending))
    assert old.pseudonym != new.pseudonym
    assert (old.family_name, old.given_name, old.birthdate, old.place_of_birth) == (
        new.family_name,
        new.given_name,
        new.birthdate,
        new.place_of_birth,
    )


def test_entered_attributes_arrive_as_entered(connector, browser):
    fields = {
        "family_name": "VON MÜLLER-LÜDENSCHEIDT",
        "given_name": "ÄNNE",
        "birth_name": "",
        "academic_title": "DR. DR.",
        "birthdate": "1970-01-31",
        "place_of_birth": "",
        "street_address": "STRAẞE 1",
        "postal_code": "99999",
        "locality": "JENA",
        "country": "d",
        "nationality": "AUT",
        "document_type": "UB",
        "issuing_state": "D",
    }
    params, begun = identify(
        connector, browser, "Mit diesen Angaben fortfahren", view="attributes", fields=fields
    )
    result = run(connector.finish(params, begun.pending))
    assert result.family_name == "VON MÜLLER-LÜDENSCHEIDT"
    assert result.given_name == "ÄNNE"
    assert result.academic_title == "DR. DR."
    assert result.birth_family_name is None
    assert result.place_of_birth is None
    assert result.address == Address(
        street_address="STRAẞE 1", postal_code="99999", locality="JENA", country="DEU"
    )
    assert result.nationalities == ("AUT",)
    assert result.document_type == "union_citizen_card"


def test_the_same_entered_attributes_are_the_same_card(connector, browser):
    fields = {"family_name": "MEIER", "given_name": "ANNA", "birthdate": "1999-09-09"}
    pseudonyms = set()
    for _ in range(2):
        params, begun = identify(
            connector, browser, "Mit diesen Angaben fortfahren", view="attributes", fields=fields
        )
        pseudonyms.add(run(connector.finish(params, begun.pending)).pseudonym)
    assert len(pseudonyms) == 1


def test_the_start_asks_for_pkce_s256_a_nonce_the_level_and_the_language(connector):
    begun = run(connector.start(REDIRECT_URI, locale="en"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(begun.url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] and query["code_challenge"] != begun.pending.code_verifier
    assert query["nonce"] == begun.pending.nonce
    assert query["state"] == begun.pending.state
    assert query["acr_values"] == "http://eidas.europa.eu/LoA/high"
    assert query["ui_locales"] == "en"
    assert query["scope"] == "openid profile address"
    assert query["redirect_uri"] == REDIRECT_URI
    assert len({begun.pending.state, begun.pending.nonce, begun.pending.code_verifier}) == 3


def test_discovery_is_fetched_once_and_cached(simulator, connector, browser):
    for _ in range(2):
        params, begun = identify(connector, browser)
        run(connector.finish(params, begun.pending))
    assert simulator.simulator.requests["discovery"] == 1
    assert simulator.simulator.requests["jwks"] == 1


def test_private_key_jwt_authenticates_the_client(tmp_path, simulator, browser):
    key = ECKey.generate_key("P-256")
    pem = tmp_path / "client.pem"
    pem.write_bytes(key.as_pem(private=True))
    simulator.simulator.clients[CLIENT_ID] = secret_client(
        secret=None, jwk=key.as_dict(private=False)
    )
    connector = OidcConnector.from_settings(
        eid_settings(simulator.issuer, eid_client_secret="", eid_private_key_file=pem)
    )
    params, begun = identify(connector, browser)
    assert run(connector.finish(params, begun.pending)).family_name == "MUSTERMANN"


def test_a_claims_table_from_the_settings_replaces_the_default(simulator, browser):
    settings = Settings.from_env(
        {
            "IDP_EID_ISSUER": simulator.issuer,
            "IDP_EID_CLIENT_ID": CLIENT_ID,
            "IDP_EID_CLIENT_SECRET": CLIENT_SECRET,
            "IDP_EID_CLAIMS": '{"family_name": "family_name", "given_name": "given_name", '
            '"birthdate": "birthdate"}',
        }
    )
    connector = OidcConnector.from_settings(settings)
    params, begun = identify(connector, browser)
    result = run(connector.finish(params, begun.pending))
    assert (result.family_name, result.birthdate) == ("MUSTERMANN", "1964-08-12")
    assert result.birth_family_name is None and result.address is None


def test_connector_for_is_none_without_an_eid_issuer_and_the_oidc_connector_with_one():
    assert connector_for(Settings.from_env({})) is None
    connector = connector_for(eid_settings("https://eid.example.de"))
    assert isinstance(connector, OidcConnector)
    assert connector.issuer == "https://eid.example.de"


def test_the_pseudonym_digest_is_keyed_and_bound_to_the_issuer():
    secret, other_secret = b"s" * 32, b"t" * 32
    digest = pseudonym_digest(secret, "https://eid.example.de", "card-1")
    assert len(digest) == 32
    assert digest == pseudonym_digest(secret, "https://eid.example.de", "card-1")
    assert digest != pseudonym_digest(other_secret, "https://eid.example.de", "card-1")
    assert digest != pseudonym_digest(secret, "https://eid.example.org", "card-1")
    assert digest != pseudonym_digest(secret, "https://eid.example.de", "card-2")


def test_every_document_an_eid_reports_can_be_recorded_and_released():
    assert set(DOCUMENT_TYPES) <= set(verified_claims.DOCUMENT_TYPES)
