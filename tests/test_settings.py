"""Settings: typed, validated, one readable message per bad value."""

from __future__ import annotations

import pytest

from idp.settings import Settings, SettingsError


def test_defaults_serve_the_embedded_database_on_loopback():
    settings = Settings.from_env({})
    assert settings.issuer == "http://localhost:8000"
    assert settings.host == "127.0.0.1"
    assert settings.database_url == "sqlite:///var/idp.db"
    assert settings.id_token_signing_alg == "RS256"
    assert settings.access_token_signing_alg == "ES256"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IDP_DATABASE_URL", "nonsense", "not a database URL"),
        ("IDP_DATABASE_URL", "mysql://x/y", "only sqlite and postgresql"),
        ("IDP_ISSUER", "id.example.de", "absolute http(s) URL"),
        ("IDP_PORT", "eighty", "whole number"),
        ("IDP_PORT", "70000", "between 1 and 65535"),
        ("IDP_ENV", "staging", "one of development, production"),
        ("IDP_SECRET_KEY", "x" * 31, "at least 32 bytes"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_problem(variable, value, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    assert message in str(error.value)


def test_a_secret_key_of_32_bytes_is_accepted_and_a_shorter_override_refused():
    assert Settings.from_env({"IDP_SECRET_KEY": "k" * 32}).secret_key == "k" * 32
    assert Settings.from_env({}).secret_key == ""  # a generated key, kept in the key folder
    with pytest.raises(SettingsError, match="IDP_SECRET_KEY: must be at least 32 bytes"):
        Settings.from_env({}, secret_key="too short")


def test_production_requires_an_https_issuer():
    smtp = {"IDP_SMTP_HOST": "mail.example.de"}
    with pytest.raises(SettingsError, match="IDP_ISSUER: must use https"):
        Settings.from_env({**smtp, "IDP_ENV": "production", "IDP_ISSUER": "http://id.example.de"})
    settings = Settings.from_env(
        {**smtp, "IDP_ENV": "production", "IDP_ISSUER": "https://id.example.de/"}
    )
    assert settings.issuer == "https://id.example.de"


def test_production_refuses_to_start_without_an_smtp_server():
    with pytest.raises(SettingsError, match="IDP_SMTP_HOST: must be set in production"):
        Settings.from_env({"IDP_ENV": "production", "IDP_ISSUER": "https://id.example.de"})


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for variable, _default, _doc in Settings.documentation():
        assert f"`{variable}`" in readme, f"{variable} missing from README's table"
