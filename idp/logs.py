"""JSON log lines on stderr, with secrets redacted before they are written."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# Field names whose values never reach a log line, wherever they appear.
SECRET_FIELDS = (
    "password",
    "client_secret",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "id_token",
    "token",
    "secret",
    "authorization",
    "cookie",
)
_SECRET_PATTERN = re.compile(
    r"(?i)\b(" + "|".join(SECRET_FIELDS) + r")=([^&\s\"']+)",
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """Blank out ``name=value`` pairs of secret fields and Authorization credentials."""
    return _BEARER.sub(r"\1 [redacted]", _SECRET_PATTERN.sub(r"\1=[redacted]", text))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message and extras."""

    converter = time.gmtime

    _standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in self._standard and not key.startswith("_") and key != "color_message":
                entry[key] = "[redacted]" if key.lower() in SECRET_FIELDS else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str) -> dict[str, Any]:
    """Send idp's and the server's logs to stderr as JSON; return uvicorn's log config."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
        },
        # Worker processes start with a bare root logger and apply only this config:
        # idp's own loggers and the libraries' log there, as JSON too.
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
