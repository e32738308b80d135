#!/usr/bin/env bash
# Installs what Muster's tests need and runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

profile=default
if [ "${CI:-}" = "true" ]; then
    profile=ci
    # A clean clone builds once: incremental caches would only take disk space.
    export CARGO_INCREMENTAL=0
fi

# The PostgreSQL backend's contract suite and the several-nodes tests run against a local
# PostgreSQL (installed from Debian when missing), started here and stopped on the way out.
started_postgres=
if [ -z "${MUSTER_TEST_POSTGRES:-}" ]; then
    bash ops/postgres.sh start >/dev/null
    started_postgres=yes
    export MUSTER_TEST_POSTGRES="postgres://postgres@127.0.0.1:${MUSTER_PG_PORT:-54329}/postgres"
fi
stop_postgres() {
    if [ -n "$started_postgres" ]; then bash ops/postgres.sh stop; fi
}
trap stop_postgres EXIT

# The single sign-on tests start a real OpenID Connect provider (ops/oidc-provider, the npm
# package oauth2-mock-server pinned in its package-lock.json) on a free loopback port.
if ! command -v node >/dev/null 2>&1; then
    echo "Node.js 20.19 or later is needed for the single sign-on tests" >&2
    exit 1
fi
npm ci --prefix ops/oidc-provider --no-audit --no-fund --loglevel=error

# The browser tests run target/debug/muster; the end-to-end tests build it themselves.
cargo build --bin muster
cargo nextest run --workspace --profile "$profile" "$@"
# The benches are built only with the `bench` feature; keep them compiling and their own tests green.
cargo nextest run -p muster-server --features bench --bin muster --profile "$profile"

# The API contract from outside: the OpenAPI document validated, schemathesis against a server.
bash ops/contract.sh

# The wall display: npm packages, chromium, a build, then browser tests on the real server.
bash backend/web/test.sh

# The responder app: the same, on a phone's viewport, with its gateway.
bash mobile-api/app/test.sh
