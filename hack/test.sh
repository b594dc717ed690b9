#!/usr/bin/env bash
# test.sh - what `make test` runs: install what is missing, build the control plane and the
# sanitized test build, start a private local stack, run every suite, tear the stack down.
# Exits non-zero when any suite fails (or crashes, leaks, or trips UBSan).
#
#   hack/test.sh                    everything
#   hack/test.sh --unit-only        unit suites (no cluster), and hack/check-libs.sh on the programs
#   hack/test.sh --integration-only [--reuse-cluster]   integration suites; with --reuse-cluster,
#                                   against the stack already exported in the environment
#   hack/test.sh --e2e-only         the end-to-end suite (tests/e2e/e2e.sh): the image and the chart
#                                   on a stack with a real node (cluster-up NODE=1), its own
#   Everything runs the e2e suite last, after the node-less stack of the other suites is down.
#   hack/test.sh --fuzz-only        the fuzz smoke section (a few seconds per libFuzzer harness)
# A full run has a "fuzz" section after the unit suites: hack/fuzz.sh smoke (FUZZ_SECONDS each,
# default 5), failing on any crash, leak or sanitizer report.
set -euo pipefail
LOG_TAG=test
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

UNIT=1 INTEGRATION=1 E2E=1 REUSE=0 FUZZ=1
for a in "$@"; do
  case $a in
    --unit-only) INTEGRATION=0 E2E=0 FUZZ=0 ;;
    --integration-only) UNIT=0 E2E=0 FUZZ=0 ;;
    --e2e-only) UNIT=0 INTEGRATION=0 FUZZ=0 ;;
    --fuzz-only) UNIT=0 INTEGRATION=0 E2E=0 FUZZ=1 ;;
    --reuse-cluster) REUSE=1 ;;
    *) die "unknown argument $a" ;;
  esac
done

TEST_DIR=${TEST_DIR:-build/sanitize}
unset MAKEFLAGS MFLAGS MAKELEVEL # a make above us must not make cmake's make chatty
"$HACK/install-deps.sh"
if { [ $INTEGRATION = 1 ] && [ $REUSE = 0 ]; } || [ $E2E = 1 ]; then
  "$HACK/build-control-plane.sh" >/dev/null
  "$HACK/build-helm.sh" >/dev/null # for the chart's suite and the e2e suite
fi
if [ $UNIT = 1 ] || [ $INTEGRATION = 1 ]; then
  log "building the sanitized test build in $TEST_DIR"
  werror=OFF; [ "${CI:-}" = true ] && werror=ON
  minlibs=$("$HACK/build-minlibs.sh") # the static, minimal libcurl and libpq (once per Debian version)
  cmake -S . -B "$TEST_DIR" -DCMAKE_BUILD_TYPE=Debug -DTN_SANITIZE=ON -DTN_WERROR=$werror \
    -DTN_BIN_DIR="$ROOT/$TEST_DIR/bin" -DTN_MINLIBS_PREFIX="$minlibs" >/dev/null
  cmake --build "$TEST_DIR" -j "$(nproc)" 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
  [ "${PIPESTATUS[0]}" = 0 ] || die "build failed"
fi
export TENANCY_OPERATOR_BIN=$ROOT/$TEST_DIR/bin/tenancy-operator
export TENANCY_TENANTCTL_BIN=$ROOT/$TEST_DIR/bin/tenantctl

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LOGDIR=$ROOT/build/test-logs
rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
export TENANCY_ROOT=$ROOT TENANCY_TEST_LOG_DIR=$LOGDIR
failed=()

# run_suite KIND PROGRAM [criterion args...]: run one Criterion program, print its summary line.
run_suite() {
  local kind=$1 prog=$2 name rc=0
  shift 2
  name=$(basename "$prog")
  "$prog" "$@" >"$LOGDIR/$kind-$name.log" 2>&1 || rc=$?
  local summary
  summary=$(grep -E 'Synthesis:' "$LOGDIR/$kind-$name.log" 2>/dev/null | tail -n 1 | sed -E 's/\x1b\[[0-9;]*m//g; s/^\[=+\] //' || true)
  if [ $rc != 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$LOGDIR/$kind-$name.log"; then
    printf '  FAIL  %-12s %-28s %s\n' "$kind" "$name" "${summary:-no summary (exit $rc)}"
    sed -E 's/\x1b\[[0-9;]*m//g' "$LOGDIR/$kind-$name.log" | grep -vE '^\[----\] +$' | tail -n 60 | sed 's/^/        /'
    failed+=("$kind/$name")
  else
    printf '  ok    %-12s %-28s %s\n' "$kind" "$name" "$summary"
  fi
}

if [ $UNIT = 1 ]; then
  log "unit suites"
  for p in "$TEST_DIR"/tests/unit/*; do [ -x "$p" ] && run_suite unit "$p"; done
  # The programs link the static, minimal libcurl and libpq: none of what Debian's shared
  # libcurl4 and libpq5 pull in is loaded (hack/check-libs.sh).
  if "$HACK/check-libs.sh" "$TENANCY_OPERATOR_BIN" "$TENANCY_TENANTCTL_BIN" >"$LOGDIR/libs.log" 2>&1; then
    printf '  ok    %-12s %-28s %s\n' libs check-libs.sh "$(sed -n 's/^check-libs: tenancy-operator: //p' "$LOGDIR/libs.log")"
  else
    printf '  FAIL  %-12s %-28s %s\n' libs check-libs.sh "see $LOGDIR/libs.log"
    sed 's/^/        /' "$LOGDIR/libs.log"
    failed+=("libs")
  fi
  # The alerts: chart == manifests/monitoring, promtool check + test rules, runbooks (no cluster).
  if "$HACK/alerts-test.sh" >"$LOGDIR/alerts.log" 2>&1; then
    printf '  ok    %-12s %-28s %s\n' alerts alerts-test.sh "$(grep -E 'alerts-test: [0-9]+ alerts' "$LOGDIR/alerts.log" | tail -n 1 | sed 's/^alerts-test: //')"
  else
    printf '  FAIL  %-12s %-28s %s\n' alerts alerts-test.sh "see $LOGDIR/alerts.log"
    tail -n 40 "$LOGDIR/alerts.log" | sed 's/^/        /'
    failed+=("alerts")
  fi
fi

if [ $FUZZ = 1 ]; then
  log "fuzz (smoke: ${FUZZ_SECONDS:-5}s per harness; long runs: docs/fuzzing.md)"
  if ! "$HACK/fuzz.sh" smoke "${FUZZ_SECONDS:-5}"; then
    failed+=("fuzz")
  fi
fi

if [ $INTEGRATION = 1 ]; then
  if [ $REUSE = 0 ]; then
    export TENANCY_STATE_DIR=$ROOT/.local/test
    trap 'TENANCY_STATE_DIR=$TENANCY_STATE_DIR "$HACK/cluster-down.sh" || true' EXIT
    "$HACK/cluster-up.sh"
    # shellcheck disable=SC1091
    . "$TENANCY_STATE_DIR/cluster.env"
  fi
  [ -n "${KUBECONFIG:-}" ] || die "no cluster in the environment: source .local/cluster.env first"
  log "integration suites (against $TENANCY_KUBE_SERVER)"
  # One test at a time: they share one API server and PostgreSQL.
  for p in "$TEST_DIR"/tests/integration/*; do [ -x "$p" ] && run_suite integration "$p" --jobs=1; done
  # The admin console in a real browser (chromium + playwright-core, node's test runner).
  if "$HACK/console-test.sh" >"$LOGDIR/console.log" 2>&1; then
    printf '  ok    %-12s %-28s %s\n' console console.test.mjs "$(grep -E '^# (pass|fail) ' "$LOGDIR/console.log" | tr '\n' ' ')"
  else
    printf '  FAIL  %-12s %-28s %s\n' console console.test.mjs "see $LOGDIR/console.log"
    grep -vE '^ +at |^# Subtest' "$LOGDIR/console.log" | tail -n 60 | sed 's/^/        /'
    failed+=("console")
  fi
  if [ $REUSE = 0 ]; then
    TENANCY_STATE_DIR=$TENANCY_STATE_DIR "$HACK/cluster-down.sh" || failed+=("integration/cluster-down")
    trap - EXIT
  fi
fi

if [ $E2E = 1 ]; then
  # Its own stack with a node: the image (offline), then the chart on it. A second node stack on
  # this machine (they share the host network) makes cluster-up refuse with the owner's name.
  t_e2e=$SECONDS
  log "e2e: the image (hack/image.sh archive)"
  archive=$("$HACK/image.sh" archive | tail -n 1) || die "the image does not build"
  export TENANCY_STATE_DIR=$ROOT/.local/e2e
  trap 'TENANCY_STATE_DIR=$TENANCY_STATE_DIR "$HACK/cluster-down.sh" || true' EXIT
  log "e2e: a stack with a node (cluster-up NODE=1)"
  t_up=$SECONDS
  TENANCY_NODE=1 "$HACK/cluster-up.sh"
  log "e2e: stack with node up in $((SECONDS - t_up)) s"
  rc=0
  (
    # shellcheck disable=SC1091
    . "$TENANCY_STATE_DIR/cluster.env"
    TENANCY_IMAGE_ARCHIVE=$archive TENANCY_HELM=$("$HACK/build-helm.sh" 2>/dev/null | tail -n 1) \
      "$ROOT/tests/e2e/e2e.sh"
  ) >"$LOGDIR/e2e.log" 2>&1 || rc=$?
  summary=$(grep -E '^\[e2e .*\] e2e: ' "$LOGDIR/e2e.log" | tail -n 1 | sed -E 's/^\[e2e [^]]*\] //')
  if TENANCY_STATE_DIR=$TENANCY_STATE_DIR "$HACK/cluster-down.sh" >>"$LOGDIR/e2e.log" 2>&1; then
    trap - EXIT
  else
    rc=1
    summary+="; cluster-down did not restore the host (see $LOGDIR/e2e.log)"
    trap - EXIT
  fi
  if [ $rc = 0 ]; then
    printf '  ok    %-12s %-28s %s\n' e2e e2e.sh "$summary (with image, node up and down: $((SECONDS - t_e2e)) s)"
  else
    printf '  FAIL  %-12s %-28s %s\n' e2e e2e.sh "${summary:-exit $rc}"
    grep -E '^  (FAIL|PASS)|^        ' "$LOGDIR/e2e.log" | grep -v '^  PASS' | tail -n 60 | sed 's/^/        /'
    failed+=("e2e/e2e.sh")
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]} (logs in $LOGDIR)"
  exit 1
fi
log "all suites passed"
