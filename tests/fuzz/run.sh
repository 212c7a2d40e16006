#!/usr/bin/env bash
# Builds the libFuzzer harnesses with AddressSanitizer and UndefinedBehaviorSanitizer and runs each
# for SECONDS (default 60) on a copy of its seed corpus; exits non-zero if any of them finds a
# crash, a leak, a timeout, an out-of-memory or a sanitizer report. See tests/fuzz/README.md.
#   tests/fuzz/run.sh [SECONDS]
# FUZZ_BUILD_DIR names the build directory (default build-fuzz, configured here if it is not yet).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

secs=${1:-60}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: tests/fuzz/run.sh [SECONDS]  (a whole number of seconds per harness)" >&2
    exit 2
fi
build=${FUZZ_BUILD_DIR:-build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzzers=true -Db_sanitize=address,undefined \
        -Dbuildtype=debug || exit 1
fi
meson compile -C "$build" fuzz_idx fuzz_checkpoint fuzz_metrics fuzz_png fuzz_tuning fuzz_layers \
    fuzz_jpeg fuzz_webp fuzz_stb fuzz_cache || exit 1

# Crash inputs and the logs stay in the build directory; the corpus copies and the harnesses'
# files (TMPDIR) go with the run, also after a crash. /dev/shm keeps them off the disk.
artifacts=$(cd "$build" && pwd)/fuzz-artifacts
mkdir -p "$artifacts" || exit 1
work=$(mktemp -d -p /dev/shm clvae-fuzz-run.XXXXXX 2>/dev/null || mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0

passed=0
failed=0
for corpus in idx checkpoint metrics png tuning layers jpeg webp stb cache; do
    harness=fuzz_$corpus
    log=$artifacts/$harness.log
    mkdir "$work/$corpus" && cp tests/fuzz/corpus/$corpus/* "$work/$corpus/" || exit 1
    rm -f "$artifacts/$harness"-*
    echo "$harness: fuzzing for $secs s (log: $log)"
    "$build/tests/fuzz/$harness" "$work/$corpus" -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -max_len=8192 -dict="tests/fuzz/$corpus.dict" -print_final_stats=1 \
        -artifact_prefix="$artifacts/$harness-" >"$log" 2>&1
    rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9A-Za-z]*' "$log" | tail -n 1)
    if [ $rc -eq 0 ] && ! grep -qE 'ERROR: [A-Za-z]*Sanitizer|runtime error:|ERROR: libFuzzer' "$log"
    then
        passed=$((passed + 1))
        echo "$harness: passed: ${runs:-?} runs in $secs s (${rate:-?} exec/s), ${cov:-no coverage line}"
    else
        failed=$((failed + 1))
        # The report, from its first line on (libFuzzer's progress lines before it say nothing).
        first=$(grep -nE 'ERROR: |runtime error:|^ALARM:' "$log" | head -n 1 | cut -d: -f1)
        echo "---- $log, from line ${first:-the end} ----"
        if [ -n "$first" ]; then
            tail -n "+$first" "$log" | head -n 100
        else
            tail -n 40 "$log"
        fi
        echo "----"
        echo "$harness: FAILED (exit $rc) after ${runs:-?} runs, ${cov:-no coverage line}"
        saved=$(sed -n 's/.*Test unit written to //p' "$log")
        if [ -n "$saved" ]; then
            for input in $saved; do
                echo "$harness: the input is saved in $input; rerun it with:"
                echo "    $build/tests/fuzz/$harness $input"
            done
        else
            echo "$harness: no input was saved; see $log"
        fi
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
