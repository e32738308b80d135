#!/usr/bin/env bash
# The responder app's tests: installs the npm packages (npm ci, from package-lock.json) and
# Debian's chromium if missing, builds the app, and runs the browser test against the real
# `muster` binary (target/debug/muster, under CARGO_TARGET_DIR when set, unless MUSTER_BIN
# says otherwise). Screenshots: test-artifacts/responder/.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is needed for the responder app (Node.js 20 or later)" >&2
    exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get"
    $apt install -y chromium >/dev/null 2>&1 \
        || { $apt update >/dev/null && $apt install -y chromium >/dev/null; }
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
node tests/browser.mjs --muster "${MUSTER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/muster}"
