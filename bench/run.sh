#!/usr/bin/env bash
# Entry point of the benchmark suite (`make bench`): idp vs node-oidc-provider.
# Installs what the bench needs when missing (Debian's wrk, the anchor's npm
# packages from the committed lock file), then runs bench/run.py with the given
# arguments (e.g. --quick) and writes bench/RESULTS.md. Python: $BENCH_PYTHON
# (make bench passes the project's .venv, which has httpx and argon2-cffi), else
# a bench/.venv made here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y wrk; fi
fi
command -v node >/dev/null || { echo "bench: node is required for the anchor (apt-get install -y nodejs npm)" >&2; exit 2; }
[ -f "$here/anchor/node_modules/oidc-provider/package.json" ] && [ -f "$here/anchor/node_modules/pg/package.json" ] || "$here/anchor/install.sh"
py="${BENCH_PYTHON:-$here/.venv/bin/python}"
if ! "$py" -c "import httpx, argon2" 2>/dev/null; then
  python3 -m venv "$here/.venv"
  py="$here/.venv/bin/python"
  "$py" -m pip install -q -r "$here/requirements.txt"
fi
exec "$py" "$here/run.py" "$@"
