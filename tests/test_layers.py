"""idp's layers hold (pyproject.toml, ``[tool.importlinter]``), and breaking one is caught.

``lint-imports`` checks the contracts: web above oidc above accounts above assurance
above the services and db; nothing below the web layer imports litestar. Run here, so
``make test`` (and CI) fails when a contract breaks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``project`` (its pyproject.toml and its idp/), without a cache."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_of_idp_keeps_the_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        ("idp/oidc/server.py", "import litestar", "idp.oidc.server -> litestar"),
        ("idp/accounts/sessions.py", "import litestar", "idp.accounts.sessions -> litestar"),
        ("idp/db/engine.py", "import idp.oidc.tokens", "idp.db.engine -> idp.oidc.tokens"),
        ("idp/oidc/tokens.py", "import idp.web.errors", "idp.oidc.tokens -> idp.web.errors"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(tmp_path, module, added, broken):
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "idp",
        project / "idp",
        ignore=shutil.ignore_patterns("__pycache__", "templates", "static", "i18n"),
    )
    shutil.copy(ROOT / "pyproject.toml", project)
    path = project / module
    path.write_text(f"{path.read_text()}\n{added}\n")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
