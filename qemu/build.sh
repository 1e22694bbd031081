#!/usr/bin/env bash
# Build everything a QEMU boot of snapinit needs, from this repository.
#   qemu/build.sh OUTDIR
# Produces OUTDIR/snapinit (static PID 1), OUTDIR/snapshot (static tool),
# OUTDIR/rootfs.squashfs (busybox + both binaries + the test agent) and
# OUTDIR/build-times (kernel/cargo/rootfs seconds). Last stdout line: the
# kernel bzImage path. Progress goes to stderr. Fails loudly on anything odd
# (a dynamic binary, a placeholder PID 1, a failed build).
#
# PID 1 is built on its own (`cargo build --release -p snapinit`): a workspace
# build unifies `std` into shared crates and turns it into a placeholder.
# CARGO_TARGET_DIR defaults to <repo>/target.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() { echo "build.sh: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

"$here/deps.sh"
command -v cargo >/dev/null || die "cargo not found in PATH (install rustup / a Rust toolchain)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

t0=$(now)
kernel=$("$here/build-kernel.sh" x86_64 | tail -n 1)
[[ -s $kernel ]] || die "build-kernel.sh gave no bzImage"
t1=$(now)
echo "build.sh: kernel $kernel ($(secs "$t0" "$t1") s)" >&2

echo "build.sh: cargo build --release -p snapinit" >&2
(cd "$repo" && cargo build --release -p snapinit) >&2 || die "cargo build -p snapinit failed"
install -m 0755 "$CARGO_TARGET_DIR/release/snapinit" "$out/snapinit"
t2=$(now)

echo "build.sh: cargo build --release -p snapshot (static, x86_64-unknown-linux-gnu)" >&2
(cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release -p snapshot --target x86_64-unknown-linux-gnu) >&2 ||
  die "cargo build -p snapshot failed"
install -m 0755 "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/snapshot" "$out/snapshot"
t3=$(now)

for b in snapinit snapshot; do
  desc=$(file -b "$out/$b")
  [[ $desc == *ELF*x86-64* ]] || die "$b is not an x86-64 ELF: $desc"
  [[ $desc == *static* && $desc != *dynamically* ]] ||
    die "$b is not statically linked (the rootfs has no libc): $desc"
done
# The placeholder PID 1 (from a workspace build) lacks the boot path's messages.
grep -aq 'nothing to replay' "$out/snapinit" ||
  die "$out/snapinit looks like the placeholder PID 1 (built together with the workspace?)"
"$out/snapshot" --version >/dev/null || die "$out/snapshot does not run on the host"

"$here/mkrootfs.sh" "$out/rootfs.squashfs" --snapinit "$out/snapinit" \
  --snapshot "$out/snapshot" --agent "$here/agent.sh"
t4=$(now)
printf 'kernel %s\nsnapinit %s\nsnapshot %s\nrootfs %s\n' "$(secs "$t0" "$t1")" \
  "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$(secs "$t3" "$t4")" >"$out/build-times"
echo "build.sh: built in $(secs "$t0" "$t4") s: $(tr '\n' ' ' <"$out/build-times")" >&2
echo "$kernel"
