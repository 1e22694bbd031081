#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each and prints executions, coverage and crashes.
#   fuzz/run.sh SECONDS [TARGET...]
#   fuzz/run.sh --runs N [TARGET...]     exactly N executions per target (the long run)
# libFuzzer needs nightly compiler flags: this uses the stable toolchain with RUSTC_BOOTSTRAP=1
# (set here), installs cargo-fuzz from crates.io once (cached in ~/.cargo/bin; unoptimized:
# it only starts cargo, and a cold machine builds it faster so), builds with overflow checks
# and debug assertions on (-a; fuzz/Cargo.toml too) and no sanitizer (-s none: the fuzzed
# code has no `unsafe`). Seeds: fuzz/seeds/TARGET (kept in git, made by
# `SNAPINIT_WRITE_SEEDS=1 cargo test -p snapshot --test fuzz_seeds`); the growing corpus is
# fuzz/corpus/TARGET (ignored by git); crashes land in fuzz/artifacts/TARGET and the script exits
# 1 if there is any. Copy a crash to fuzz/regressions/TARGET/ to make it a regression test
# (userland/tests/fuzz_regressions.rs replays every file there and every seed).
set -euo pipefail
cd "$(dirname "$0")"
limit=(-max_total_time="${1:?usage: fuzz/run.sh SECONDS|--runs N [TARGET...]}")
if [ "$1" = "--runs" ]; then
    limit=(-runs="${2:?--runs N}")
    shift
fi
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(header chain tar gzip cmdline survey replay)
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked --debug
fi
cargo fuzz build -s none -a 2>&1 | grep -E '^(error|warning)' -A5 || true
declare -A maxlen=([header]=300 [chain]=70000 [tar]=20000 [gzip]=${FUZZ_GZIP_MAX_LEN:-4096} [cmdline]=600 [survey]=70000 [replay]=20000)
printf '%-8s %14s %8s %8s %8s\n' target executions cov ft crashes
fail=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f -name 'crash-*' | wc -l)
    log=$(mktemp)
    set +e
    cargo fuzz run -s none -a "$t" "corpus/$t" "seeds/$t" -- \
        "${limit[@]}" -max_len="${maxlen[$t]:-4096}" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE ' cov: [0-9]+' "$log" | grep -oE '[0-9]+' | tail -1)
    ft=$(grep -oE ' ft: [0-9]+' "$log" | grep -oE '[0-9]+' | tail -1)
    after=$(find "artifacts/$t" -type f -name 'crash-*' | wc -l)
    crashes=$((after - before))
    printf '%-8s %14s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        fail=1
        echo "--- $t: exit $rc; log tail:" >&2
        tail -30 "$log" >&2
    fi
    rm -f "$log"
done
exit $fail
