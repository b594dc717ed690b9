#!/usr/bin/env bash
# console-test.sh - the admin console's browser suite (tests/console/console.test.mjs): Debian's
# chromium, headless, driven by playwright-core (from npm, pinned by the lockfile; no browser
# download) against the real operator and API server of the stack in the environment.
#   source .local/cluster.env; TENANCY_OPERATOR_BIN=... hack/console-test.sh
# Exits non-zero when a test fails, and loudly when chromium or Node.js is missing.
set -euo pipefail
LOG_TAG=console-test
. "$(dirname "$0")/lib.sh"
cd "$ROOT/tests/console"
CHROMIUM=${TENANCY_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || die "chromium is missing ($CHROMIUM): run hack/install-deps.sh (apt-get install chromium)"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are missing: run hack/install-deps.sh"
[ -n "${KUBECONFIG:-}" ] || die "no cluster in the environment: source .local/cluster.env first"
[ -n "${TENANCY_OPERATOR_BIN:-}" ] || die "TENANCY_OPERATOR_BIN is not set"
# the driver, exactly as locked (again only when the lockfile changed)
if ! cmp -s package-lock.json node_modules/.tn-installed-lock 2>/dev/null; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null ||
    die "npm ci failed in tests/console"
  cp package-lock.json node_modules/.tn-installed-lock
fi
export TENANCY_CHROMIUM=$CHROMIUM
exec node --test --test-concurrency=1 --test-reporter=tap console.test.mjs
