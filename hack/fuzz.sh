#!/usr/bin/env bash
# fuzz.sh - build and run the libFuzzer harnesses of tests/fuzz (docs/fuzzing.md).
#
#   hack/fuzz.sh build                  build them in build/fuzz (clang, -fsanitize=fuzzer,address,undefined)
#   hack/fuzz.sh smoke [SECONDS]        run each for SECONDS (default 5) from its committed corpus;
#                                       fails on any crash, leak, timeout or sanitizer report
#   hack/fuzz.sh long NAME [RUNS]       one long run (default 10,000,000 executions) of fuzz_NAME
#                                       in build/fuzz/work/NAME (a copy of the corpus); log in
#                                       build/fuzz/logs/NAME.log
#   hack/fuzz.sh merge NAME             minimise build/fuzz/work/NAME into tests/fuzz/corpus/NAME
#                                       (-merge=1: only inputs that add coverage are kept)
# Targets: every tests/fuzz/fuzz_*.c. clang and libclang-rt come from Debian and are installed
# on demand (they are not needed by any other target).
set -euo pipefail
LOG_TAG=fuzz
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
CORPUS=tests/fuzz/corpus
unset MAKEFLAGS MFLAGS MAKELEVEL
# Leaks count as findings; UBSan stops at the first report (the build has -fno-sanitize-recover).
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${FUZZ_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

targets() { for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done; }

ensure_clang() {
  local v missing=()
  command -v clang >/dev/null || missing+=(clang)
  v=$(clang --version 2>/dev/null | sed -nE 's/.*clang version ([0-9]+).*/\1/p' | head -n 1)
  if [ -z "$v" ] || ! ls /usr/lib/llvm-"$v"/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    missing+=("libclang-rt-${v:-14}-dev")
  fi
  [ ${#missing[@]} = 0 ] && return 0
  log "installing ${missing[*]} (the fuzz build only)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  ensure_clang
  local werror=OFF
  [ "${CI:-}" = true ] && werror=ON
  local minlibs
  minlibs=$("$HACK/build-minlibs.sh")
  cmake -S . -B "$FUZZ_DIR" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DTN_FUZZ=ON -DTN_TESTS=OFF \
    -DTN_WERROR=$werror -DTN_BIN_DIR="$ROOT/$FUZZ_DIR/bin" -DTN_MINLIBS_PREFIX="$minlibs" >/dev/null
  cmake --build "$FUZZ_DIR" -j "${JOBS:-$(nproc)}" 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
  [ "${PIPESTATUS[0]}" = 0 ] || die "fuzz build failed"
}

# run_one NAME LOG ARGS...: runs fuzz_NAME; fails when it exits non-zero or reports anything.
run_one() {
  local name=$1 logf=$2 rc=0
  shift 2
  "$FUZZ_DIR/fuzz/fuzz_$name" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$FUZZ_DIR/artifacts/$name-" "$@" >"$logf" 2>&1 || rc=$?
  if [ $rc != 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:' "$logf"; then
    return 1
  fi
}

summary() { # execs and time of a finished run, from -print_final_stats
  local logf=$1
  printf 'execs %s in %ss, corpus %s' "$(sed -nE 's/^stat::number_of_executed_units: *//p' "$logf")" \
    "$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$logf" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo '?')" \
    "$(grep -E '#[0-9]+.*DONE' "$logf" | grep -oE 'corp: [^ ]+' | sed 's/corp: //' || echo '?')"
}

cmd=${1:-smoke}
shift || true
mkdir -p "$FUZZ_DIR/logs" "$FUZZ_DIR/artifacts"
case $cmd in
  build) build ;;
  smoke)
    secs=${1:-5}
    build
    failed=()
    for t in $(targets); do
      # Fuzz in a scratch copy: the committed corpus is only read.
      work=$FUZZ_DIR/smoke/$t
      rm -rf "$work"; mkdir -p "$work"
      if run_one "$t" "$FUZZ_DIR/logs/smoke-$t.log" -max_total_time="$secs" "$work" "$CORPUS/$t"; then
        printf '  ok    fuzz         %-28s %s\n' "fuzz_$t" "$(summary "$FUZZ_DIR/logs/smoke-$t.log")"
      else
        printf '  FAIL  fuzz         %-28s (crash input in %s/artifacts)\n' "fuzz_$t" "$FUZZ_DIR"
        grep -vE '^#[0-9]+' "$FUZZ_DIR/logs/smoke-$t.log" | tail -n 40 | sed 's/^/        /'
        failed+=("$t")
      fi
    done
    [ ${#failed[@]} = 0 ] || die "fuzz smoke failed: ${failed[*]}"
    ;;
  long)
    name=${1:?usage: hack/fuzz.sh long NAME [RUNS]}
    runs=${2:-10000000}
    work=$FUZZ_DIR/work/$name
    mkdir -p "$work"
    cp -n "$CORPUS/$name"/* "$work"/ 2>/dev/null || true
    start=$(date +%s)
    if run_one "$name" "$FUZZ_DIR/logs/$name.log" -runs="$runs" "$work"; then res=ok; else res=FAIL; fi
    echo "fuzz_$name: $res, $(summary "$FUZZ_DIR/logs/$name.log"), wall $(($(date +%s) - start))s, $(date -u +%FT%TZ)" |
      tee -a "$FUZZ_DIR/logs/long-results.txt"
    [ $res = ok ]
    ;;
  merge)
    name=${1:?usage: hack/fuzz.sh merge NAME}
    tmp=$FUZZ_DIR/merge/$name
    rm -rf "$tmp"; mkdir -p "$tmp"
    "$FUZZ_DIR/fuzz/fuzz_$name" -merge=1 "$tmp" "$CORPUS/$name" "$FUZZ_DIR/work/$name" >"$FUZZ_DIR/logs/merge-$name.log" 2>&1 ||
      die "merge of $name failed (see $FUZZ_DIR/logs/merge-$name.log)"
    rm -rf "${CORPUS:?}/$name"; mkdir -p "$CORPUS/$name"; cp "$tmp"/* "$CORPUS/$name"/
    log "$name: $(ls "$CORPUS/$name" | wc -l) inputs, $(du -sh "$CORPUS/$name" | cut -f1)"
    ;;
  *) die "unknown command $cmd (build, smoke, long, merge)" ;;
esac
