"""`idp clients ...` as a real process against the test database."""

from __future__ import annotations

import hashlib
import json

import pytest

from idp.db.models import Client
from idp.oidc.clients import new_client_id
from tests.test_cli import run


def cli(db, keys_dir, *args):
    return run("clients", *args, env={"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)})


def test_a_confidential_client_gets_its_secret_once_and_only_its_digest_is_stored(db, keys_dir):
    added = cli(
        db,
        keys_dir,
        "add",
        "--name",
        "Wohngeld",
        "--redirect-uri",
        "https://wohngeld.example.de/cb",
        "--scope",
        "openid",
        "--scope",
        "email",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    secret = data["client_secret"]
    with db.unit_of_work() as session:
        row = session.get(Client, data["client_id"])
        assert row.secret_digest == hashlib.sha256(secret.encode()).digest()
        assert row.scopes == ["openid", "email"]
    result = cli(db, keys_dir, "show", data["client_id"], "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "client_secret" not in shown and shown["name"] == "Wohngeld"
    assert secret not in cli(db, keys_dir, "list").stdout

    updated = cli(
        db, keys_dir, "update", data["client_id"], "--new-secret", "--first-party", "--json"
    )
    new = json.loads(updated.stdout)
    assert new["client_secret"] != secret and new["first_party"] is True

    assert cli(db, keys_dir, "remove", data["client_id"]).returncode == 0
    assert "no clients" in cli(db, keys_dir, "list").stdout


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        # A public client must redirect over https.
        (["--public", "--redirect-uri", "http://app.example.de/cb"], "https"),
        # A chosen client_id must not read as a command-line option.
        (["--client-id=-app", "--redirect-uri", "https://app.example.de/cb"], "client_id must be"),
    ],
)
def test_a_bad_registration_is_refused_with_one_line(db, keys_dir, arguments, said):
    result = cli(db, keys_dir, "add", "--name", "App", *arguments)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_a_client_id_that_begins_with_a_dash_is_taken_as_the_id(db, keys_dir):
    for command in ("show", "update", "remove"):
        result = cli(db, keys_dir, command, "-Xnope")
        assert result.returncode == 1, result.stderr
        assert "no such client: -Xnope" in result.stderr


def test_generated_client_ids_are_one_word_of_letters_and_digits():
    # A generated id once began with "-" and `idp clients show <id>` read it as an option.
    ids = {new_client_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and i.isascii() and i.isalnum() for i in ids)


def test_a_new_client_signs_id_tokens_with_the_configured_default_algorithm(db, keys_dir):
    env = {"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)}
    args = ["clients", "add", "--name", "A", "--redirect-uri", "https://a.example.de/cb", "--json"]
    default = json.loads(run(*args, env=env).stdout)["client_id"]
    es256 = json.loads(run(*args, env={**env, "IDP_ID_TOKEN_SIGNING_ALG": "ES256"}).stdout)
    chosen = json.loads(
        run(
            *args, "--id-token-alg", "RS256", env={**env, "IDP_ID_TOKEN_SIGNING_ALG": "ES256"}
        ).stdout
    )
    with db.unit_of_work() as session:
        assert session.get(Client, default).id_token_signed_response_alg == "RS256"
        assert session.get(Client, es256["client_id"]).id_token_signed_response_alg == "ES256"
        assert session.get(Client, chosen["client_id"]).id_token_signed_response_alg == "RS256"


def test_updating_only_the_name_keeps_scopes_grant_types_and_redirect_uris(db, keys_dir):
    # click passes a repeatable option that was not given as an empty tuple; it once
    # emptied the client's scopes, grant types and redirect URIs.
    added = cli(
        db,
        keys_dir,
        "add",
        "--name",
        "Wohngeld",
        "--redirect-uri",
        "https://wohngeld.example.de/cb",
        "--post-logout-redirect-uri",
        "https://wohngeld.example.de/bye",
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--grant-type",
        "authorization_code",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    client_id = json.loads(added.stdout)["client_id"]

    updated = cli(db, keys_dir, "update", client_id, "--name", "Wohngeld online", "--json")

    assert updated.returncode == 0, updated.stderr
    shown = json.loads(cli(db, keys_dir, "show", client_id, "--json").stdout)
    assert shown["name"] == "Wohngeld online"
    assert shown["redirect_uris"] == ["https://wohngeld.example.de/cb"]
    assert shown["post_logout_redirect_uris"] == ["https://wohngeld.example.de/bye"]
    assert shown["scopes"] == ["openid", "offline_access"]
    assert shown["grant_types"] == ["authorization_code"]


def test_a_repeatable_option_given_on_update_replaces_the_list(db, keys_dir):
    added = cli(
        db, keys_dir, "add", "--name", "A", "--redirect-uri", "https://a.example.de/cb", "--json"
    )
    client_id = json.loads(added.stdout)["client_id"]

    cli(db, keys_dir, "update", client_id, "--scope", "openid", "--scope", "address")

    shown = json.loads(cli(db, keys_dir, "show", client_id, "--json").stdout)
    assert shown["scopes"] == ["openid", "address"]
    assert shown["redirect_uris"] == ["https://a.example.de/cb"]
