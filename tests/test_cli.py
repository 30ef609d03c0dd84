"""The idp command line, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

IDP = [sys.executable, "-m", "idp"]


def run(*args, env=None, timeout=60):
    return subprocess.run(
        [*IDP, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of an `idp serve` on a free loopback port, with its own SQLite file."""
    port = free_port()
    return {
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.db",
        "IDP_KEYS_DIR": str(tmp_path / "keys"),
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "IDP_PORT": str(port),
        **extra,
    }


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen]:
    """`idp serve` as a real process, once it answers /healthz; stopped after."""
    with tempfile.TemporaryFile() as log:  # not a pipe: a full pipe would stop the server
        server = subprocess.Popen(
            [*IDP, "serve", *args], env={**os.environ, **env}, stdout=log, stderr=log
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            # A time, not a number of tries: on a loaded machine migrating, making keys and
            # starting workers takes several times as long as on an idle one.
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{env['IDP_ISSUER']}/healthz")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, output()
                    if time.monotonic() > deadline:
                        pytest.fail(f"idp serve did not answer /healthz:\n{output()}")
                    time.sleep(0.1)
            yield server
        finally:
            server.terminate()
            server.wait(15)


def test_a_bad_database_url_stops_serve_with_one_line_and_status_2():
    result = run("serve", env={"IDP_DATABASE_URL": "nonsense"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "IDP_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(tmp_path):
    env = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path}/new.db", "IDP_KEYS_DIR": str(tmp_path)}
    result = run("serve", env=env)
    assert result.returncode == 2
    assert "idp db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kid_that_begins_with_a_dash_is_taken_as_the_kid(tmp_path):
    env = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.db", "IDP_KEYS_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    result = run("keys", "retire", "-Z0nOtAKid", env=env)
    assert result.returncode == 1
    assert "-Z0nOtAKid" in result.stderr and "No such option" not in result.stderr


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "keys"):
        assert command in result.stdout


def test_migrate_create_keys_rotate_and_serve(tmp_path: Path):
    env = serve_env(tmp_path)
    issuer = env["IDP_ISSUER"]
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("keys", "ensure", env=env).returncode == 0
    listed = json.loads(run("keys", "list", "--json", env=env).stdout)["keys"]
    assert sorted(k["state"] for k in listed) == ["active", "active", "next", "next"]
    assert run("keys", "rotate", "--alg", "ES256", env=env).returncode == 1  # keys made just now
    assert run("keys", "rotate", "--alg", "ES256", "--force", env=env).returncode == 0
    states = [k["state"] for k in json.loads(run("keys", "list", "--json", env=env).stdout)["keys"]]
    assert states.count("retired") == 1

    with serving(env):
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration")
        assert metadata.json()["issuer"] == issuer
        jwks = httpx.get(f"{issuer}/jwks.json").json()
        assert {k["kid"] for k in jwks["keys"]} == {k["kid"] for k in listed} | {
            k["kid"] for k in json.loads(run("keys", "list", "--json", env=env).stdout)["keys"]
        }
        ready = httpx.get(f"{issuer}/readyz")
        assert ready.status_code == 200
