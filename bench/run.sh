#!/bin/sh
# The benchmark of issue 11: snapinit's replay, verify, inflate and save against GNU tar,
# busybox tar, the fstools 2014 pipeline, sha256sum, gzip -dc and tar czf + sync, on the same
# bytes; sizes, peak RSS and callgrind instruction counts. Prints one markdown table at the end
# and writes it to bench/last.md. Asserts no time: it fails only when something does not work.
#
#   bench/run.sh            # 11 rounds (a few minutes)
#   bench/run.sh --quick    # 3 rounds, for CI (scripts/test.sh)
#   ROUNDS=21 bench/run.sh  # more rounds
#   SNAPINIT=path SNAPSHOT=path bench/run.sh   # measure these binaries, build nothing
#
# Needs root (namespaces, loop and tmpfs mounts, whiteouts); installs what it misses with
# apt-get (squashfs-tools, busybox-static, valgrind, binutils, gzip, tar, util-linux).
# Everything it mounts lives in its own mount namespace and goes with it.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
quick=""
for arg in "$@"; do
    case "$arg" in
        --quick) quick=--quick ;;
        *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh must run as root (namespaces, loop mounts, whiteouts)" >&2
    exit 1
fi

install() {
    echo "bench: installing $*" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
need=""
for pair in mksquashfs:squashfs-tools valgrind:valgrind strip:binutils nm:binutils \
            objdump:binutils gzip:gzip tar:tar unshare:util-linux python3:python3 \
            md5sum:coreutils sha256sum:coreutils file:file; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
# shellcheck disable=SC2086
[ -z "$need" ] || install $need
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || install busybox-static

if [ -z "${SNAPINIT:-}" ] || [ -z "${SNAPSHOT:-}" ]; then
    echo "bench: cargo build --release (PID 1 alone, then the tool)" >&2
    (cd "$here" && cargo build --release -q -p snapinit && cargo build --release -q -p snapshot)
    target=$(cd "$here" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SNAPINIT=$target/release/snapinit
    SNAPSHOT=$target/release/snapshot
    rev="built from $(git -C "$here" describe --always --dirty 2>/dev/null || echo '?')"
else
    rev="binaries given by SNAPINIT and SNAPSHOT"
fi

work=$(mktemp -d /var/tmp/snapinit-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
rounds=""
[ -n "${ROUNDS:-}" ] && rounds="--rounds $ROUNDS"
# A private mount namespace: the tmpfs and every mount below it vanish with it.
# shellcheck disable=SC2086
unshare -m --propagation private python3 "$here/bench/bench.py" $quick $rounds \
    --work "$work" --snapinit "$SNAPINIT" --snapshot "$SNAPSHOT" --rev "$rev" \
    --out "$here/bench/last.md"
