"""The eID settings: one line naming the variable for each bad value; production refuses
the simulator as the upstream; `idp eid-simulator` serves the simulator."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey

from idp.settings import Settings, SettingsError
from tests.conftest import free_port
from tests.test_cli import IDP
from tests.test_cli import run as idp

SIMULATOR = "http://127.0.0.1:8001/eid-simulator"
EID = {"IDP_EID_CLIENT_ID": "idp", "IDP_EID_CLIENT_SECRET": "a-secret"}
PRODUCTION = {
    "IDP_ENV": "production",
    "IDP_ISSUER": "https://id.example.de",
    "IDP_SMTP_HOST": "mail.example.de",
}


def refused(environ: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(environ)
    return error.value


def test_the_eid_is_off_by_default():
    settings = Settings.from_env({})
    assert settings.eid_issuer == ""
    assert settings.eid_scopes == "openid profile address"
    assert settings.eid_acr == "http://eidas.europa.eu/LoA/high"


def test_production_refuses_the_simulator_as_the_eid_service():
    error = refused({**PRODUCTION, **EID, "IDP_EID_ISSUER": SIMULATOR})
    assert error.variable == "IDP_EID_ISSUER"
    assert "simulator" in str(error)
    error = refused({**PRODUCTION, **EID, "IDP_EID_ISSUER": "https://x.example/eid-simulator/"})
    assert error.variable == "IDP_EID_ISSUER"


def test_production_needs_an_https_eid_service_and_takes_one():
    error = refused({**PRODUCTION, **EID, "IDP_EID_ISSUER": "http://eid.example.de"})
    assert error.variable == "IDP_EID_ISSUER" and "https" in str(error)
    settings = Settings.from_env({**PRODUCTION, **EID, "IDP_EID_ISSUER": "https://eid.example.de"})
    assert settings.eid_issuer == "https://eid.example.de"


def test_development_takes_the_simulator():
    assert Settings.from_env({**EID, "IDP_EID_ISSUER": SIMULATOR}).eid_issuer == SIMULATOR


def test_an_eid_service_needs_a_client_id():
    error = refused({"IDP_EID_ISSUER": SIMULATOR, "IDP_EID_CLIENT_SECRET": "s"})
    assert error.variable == "IDP_EID_CLIENT_ID"


def test_an_eid_client_has_exactly_one_way_to_authenticate(tmp_path):
    pem = tmp_path / "key.pem"
    pem.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    base = {"IDP_EID_ISSUER": SIMULATOR, "IDP_EID_CLIENT_ID": "idp"}
    assert refused(base).variable == "IDP_EID_CLIENT_SECRET"
    both = {**base, "IDP_EID_CLIENT_SECRET": "s", "IDP_EID_PRIVATE_KEY_FILE": str(pem)}
    assert refused(both).variable == "IDP_EID_CLIENT_SECRET"
    settings = Settings.from_env({**base, "IDP_EID_PRIVATE_KEY_FILE": str(pem)})
    assert settings.eid_private_key_file == pem


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IDP_EID_ISSUER", "eid.example.de", "absolute http(s) URL"),
        ("IDP_EID_SCOPES", "profile address", "must include openid"),
        ("IDP_EID_CLAIMS", "not json", "JSON object"),
        ("IDP_EID_CLAIMS", "[]", "JSON object"),
        ("IDP_EID_CLAIMS", '{"nick": "nickname"}', "not one of"),
        ("IDP_EID_TIMEOUT_SECONDS", "0", "between 1 and 120"),
        ("IDP_EID_PRIVATE_KEY_FILE", "/nonexistent/key.pem", "cannot read"),
    ],
)
def test_a_bad_eid_value_names_the_variable_and_the_problem(variable, value, message):
    error = refused({variable: value})
    assert error.variable == variable
    assert message in str(error)


def test_a_private_key_file_must_hold_a_usable_key(tmp_path):
    text = tmp_path / "text.pem"
    text.write_text("hello")
    assert "no unencrypted PEM private key" in str(refused({"IDP_EID_PRIVATE_KEY_FILE": str(text)}))
    small = tmp_path / "small.pem"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key refused
    small.write_bytes(weak.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert "2048" in str(refused({"IDP_EID_PRIVATE_KEY_FILE": str(small)}))


def test_serve_in_production_with_the_simulator_stops_with_one_line_and_status_2():
    result = idp("serve", env={**PRODUCTION, **EID, "IDP_EID_ISSUER": SIMULATOR})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "IDP_EID_ISSUER" in lines[0] and "simulator" in lines[0]


def test_the_simulator_command_refuses_production():
    result = idp("eid-simulator", env={**PRODUCTION, **EID})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "idp: IDP_ENV: the eID simulator runs only with IDP_ENV=development"
    ]


def test_the_simulator_command_needs_the_client_it_accepts():
    result = idp("eid-simulator", env={"IDP_EID_CLIENT_ID": ""})
    assert result.returncode == 2 and "IDP_EID_CLIENT_ID" in result.stderr


def test_the_simulator_command_serves_discovery_on_its_port(tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/eid-simulator"
    env = {**os.environ, **EID, "IDP_ISSUER": "http://127.0.0.1:8000"}
    command = ["eid-simulator", "--port", str(port), "--key-file", str(tmp_path / "k.pem")]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([*IDP, *command], env=env, stdout=log, stderr=log)
        try:
            metadata = _wait_for(f"{issuer}/.well-known/openid-configuration", process, log)
        finally:
            process.terminate()
            process.wait(15)
    assert metadata["issuer"] == issuer
    assert (tmp_path / "k.pem").exists()


def _wait_for(url: str, process: subprocess.Popen, log) -> dict:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url).json()
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"idp eid-simulator did not answer:\n{log.read().decode()}")
            time.sleep(0.1)
