#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian bookworm machine, as root.
# Installs what it needs (apt-get, rustup components) itself.
#   scripts/test.sh           host tests + QEMU boot tests (qemu/run-tests.sh: every scenario on
#                             x86_64; on UBI blank, chain, roundtrip, powercut and trial, and
#                             nandsim; the two fleet units; blank, chain, roundtrip on mipsel,
#                             arm and aarch64, powercut on arm and aarch64; UBI on aarch64)
#   scripts/test.sh --host    host tests only (and the quick benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."

host_only=0
[ "${1:-}" = "--host" ] && host_only=1

# Each step says when it started (seconds since the start): the time budget's figures.
# qemu/suite.sh counts from the same start.
export SNAPINIT_T0=$(date +%s)
step() { printf '\n== %s (at %d s)\n' "$*" "$(($(date +%s) - SNAPINIT_T0))"; }

step "dependencies"
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh must run as root: the tests mount squashfs, tmpfs and overlayfs in" >&2
    echo "private namespaces and create whiteouts and trusted.* xattrs." >&2
    exit 1
fi
scripts/deps.sh
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

if [ "$host_only" = 0 ]; then
    # The four QEMU kernels are most of a cold run's CPU (~13 min each on 2 cores) and the
    # host steps leave a core idle much of the time: build them now, niced, so the host steps
    # keep priority. build-kernel.sh serializes on a lock per kernel, so qemu/build.sh later
    # waits for one in progress and takes it from the cache; a failure here is retried there.
    mkdir -p target
    step "QEMU kernels: built in the background from now on (log: target/kernels.log)"
    setsid nice -n 10 bash -c 'for a in x86_64 mipsel arm aarch64; do
        qemu/build-kernel.sh "$a" >/dev/null || echo "kernel $a: failed, qemu/build.sh retries"
    done' >target/kernels.log 2>&1 &
    kernels=$!
    trap 'kill -- "-$kernels" 2>/dev/null || true' EXIT
fi

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The real PID 1 (no_std) exists only in a build of its own; the workspace lints a placeholder.
cargo clippy --release -p snapinit -- -D warnings

step "build (release): the static PID 1 alone, then the userland"
# Built alone: a workspace build unifies std into shared crates and makes PID 1 a placeholder.
cargo build --release -p snapinit
cargo build --release -p snapshot

step "host tests"
cargo test --workspace

step "the tool without the fleet client (OpenWrt's snapshot package; snapshot-fleet has it)"
cargo clippy -p snapshot --no-default-features --all-targets -- -D warnings
cargo test -p snapshot --no-default-features --test cli_newcomer --test cli_flow --test cli_trial

step "a unit's fleet client, without the build host's commands and progress bars (snapshot-fleet)"
cargo clippy -p snapshot --no-default-features --features fleet --all-targets -- -D warnings
cargo test -p snapshot --no-default-features --features fleet --test cli_newcomer --test cli_flow \
    --test cli_trial

step "power-cut and bit-flip proof (figures)"
cargo test -p snapshot --test powercut -- --nocapture --test-threads=2 2>&1 \
    | grep -E 'checked|erase counts|test result'

step "fuzz smoke: every cargo-fuzz target for a few seconds (fuzz/run.sh)"
fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-5}"

step "benchmark, quick: it must run; it asserts no time (bench/run.sh)"
bench/run.sh --quick

if [ "$host_only" = 0 ]; then
    # Which scenarios run on which architecture and medium: qemu/suite.sh.
    qemu/suite.sh
fi
