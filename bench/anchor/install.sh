#!/usr/bin/env bash
# Installs the anchor's npm dependencies (oidc-provider, argon2, pg) into
# bench/anchor/node_modules from the committed package-lock.json.
# npm's registry only; argon2 ships prebuilt binaries inside its package.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "node is required (apt-get install -y nodejs npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
node -e "import('oidc-provider').then(() => import('argon2')).then(() => import('pg')).then(() => console.log('anchor dependencies ok'))"
