"""What a worker process loads: the service's memory per worker is a target (issue 9)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded by `import idp.app` only if something pulls them in by accident: alembic (the
# migrations, run by `idp db upgrade` and `idp serve --migrate` in the parent, not in
# workers) and httpx's command line with rich and pygments (5.6 MiB, never run).
NOT_IN_A_WORKER = ("alembic", "rich", "pygments", "httpx._main")

PROBE = f"""
import json, sys
import idp.app
import httpx  # the back-channel logout client still works without its command line
print(json.dumps({{
    "loaded": [m for m in {NOT_IN_A_WORKER!r} if sys.modules.get(m) is not None],
    "client": callable(httpx.Client),
}}))
"""


def test_a_worker_does_not_load_what_it_never_runs():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"loaded": [], "client": True}
