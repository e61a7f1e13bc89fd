#!/usr/bin/env bash
# CI's short, bounded fuzz step (.ci/run calls it): builds every fuzz target and runs
# each for FUZZ_SECONDS (default 5) over its committed seed corpus (fuzz/seeds/TARGET);
# new inputs go to a scratch directory, the committed corpus is never written. Fails on
# any crash, panic, timeout or out-of-memory; the failing input is left in
# fuzz/artifacts/TARGET/ and named in the output. The long runs are in fuzz/README.md.
#
# Skips (exit 0, with a message) only when cargo-fuzz is not installed, i.e. when
# `.ci/run` could not install it from crates.io.
set -euo pipefail
cd "$(dirname "$0")"

secs=${FUZZ_SECONDS:-5}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz --locked failed?)"
    exit 0
fi

start=$SECONDS
# -s none: no AddressSanitizer (it needs a nightly rustc's -Zsanitizer; the code under
# test is safe Rust, whose faults are panics). Stable rustc: libFuzzer's coverage
# instrumentation is stable -C flags. --dev: unoptimised (debug assertions and overflow
# checks on), about half the CPU time of the -O -a build the long runs use, which
# matters more than execution speed for a few seconds per target.
cargo fuzz build -s none --dev
echo "fuzz: built every target in $((SECONDS - start)) s"

# Panics still print a backtrace; anyhow errors (the lb decoders return them on every
# malformed reply) must not capture one each, which is 20 times slower.
export RUST_BACKTRACE=1 RUST_LIB_BACKTRACE=0
bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/debug
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $(cargo fuzz list); do
    mkdir -p "$scratch/$t" "artifacts/$t"
    log="$scratch/$t.log"
    dict=()
    [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
    if "$bin/$t" "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "$scratch/$t" "seeds/$t" >"$log" 2>&1; then
        runs=$(grep -E '^Done [0-9]+ runs' "$log" || true)
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
        echo "fuzz: $t ok: ${runs:-?}, ${cov:-no coverage line}"
    else
        echo "fuzz: $t FAILED; its log:"
        tail -n 60 "$log"
        failed+=("$t")
    fi
done
echo "fuzz: step took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
