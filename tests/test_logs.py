"""Log lines are JSON and never carry secrets."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from litestar.testing import TestClient

from idp import logs
from idp.app import create_app
from idp.logs import JsonFormatter, redact


def test_secret_parameters_and_credentials_are_redacted():
    line = redact(
        "POST /token code=abc123&client_secret=s3cr3t&grant_type=authorization_code "
        "Authorization: Basic dXNlcjpwYXNz password=hunter2"
    )
    for secret in ("abc123", "s3cr3t", "dXNlcjpwYXNz", "hunter2"):
        assert secret not in line
    assert "grant_type=authorization_code" in line


def test_records_are_one_json_object_with_extras_redacted():
    record = logging.LogRecord("idp", logging.INFO, __file__, 1, "login for %s", ("a@b.de",), None)
    record.password = "hunter2"
    record.client_id = "demo"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "login for a@b.de"
    assert entry["level"] == "info"
    assert entry["client_id"] == "demo"
    assert entry["password"] == "[redacted]"
    assert entry["time"].endswith("Z")


def test_the_app_leaves_the_json_handler_in_place(settings, capsys, clock):
    # litestar's default logging config replaced the root handler with its own text
    # format: every line of idp's loggers and of libraries came out as plain text.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info")
        with TestClient(create_app(settings, clock=clock), base_url=settings.issuer) as client:
            assert client.get("/.well-known/openid-configuration").status_code == 200
            logging.getLogger("idp.test").warning("after startup")
        lines = [line for line in capsys.readouterr().err.splitlines() if "after startup" in line]
        assert len(lines) == 1
        entry = json.loads(lines[0])
        assert entry["logger"] == "idp.test" and entry["level"] == "warning"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_a_worker_process_logs_json_with_only_the_servers_log_config():
    # `idp serve` with several workers: each worker process applies the log config that
    # idp.logs.configure returned for uvicorn, and nothing else.
    script = (
        "import logging, logging.config, sys\n"
        "from idp import logs\n"
        "config = logs.configure('info')\n"
        "logging.getLogger().handlers.clear()\n"  # a fresh process's bare root logger
        "logging.config.dictConfig(config)\n"
        "logging.getLogger('idp.mail').warning('from a worker')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert entry["logger"] == "idp.mail" and entry["message"] == "from a worker"
