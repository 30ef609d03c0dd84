"""Log lines are JSON and never carry secrets."""

from __future__ import annotations

import json
import logging

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
