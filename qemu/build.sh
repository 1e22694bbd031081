#!/usr/bin/env bash
# Build everything a QEMU boot of snapinit needs on one architecture, from this repository.
#   qemu/build.sh OUTDIR [ARCH]        (default x86_64; the architectures of qemu/arch.sh)
# Produces OUTDIR/snapinit (static PID 1), OUTDIR/snapshot (static tool), OUTDIR/ubimkvol
# (static, qemu/ubimkvol.c), OUTDIR/rootfs.squashfs (busybox + the three + the test agent) and
# OUTDIR/build-times (kernel/snapinit/snapshot/rootfs seconds), and last OUTDIR/kernel.path
# (the kernel's path; qemu/run-tests.sh --prebuilt reads it). Last stdout line: the kernel's
# path. Progress goes to stderr. Fails loudly on anything odd (a dynamic binary,
# a binary of another architecture, a placeholder PID 1, a failed build).
#
# The table's A_BUILD says how: native = the host's cargo (`cargo build --release -p
# snapinit` alone: a workspace build unifies `std` into shared crates and turns PID 1 into a
# placeholder; `snapshot` static with musl, docs/SIZE.md); cross = qemu/cross.sh. busybox: the host's
# busybox-static, or Debian's for the architecture (qemu/busybox.sh).
# CARGO_TARGET_DIR defaults to <repo>/target.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/arch.sh"
out=${1:?usage: build.sh OUTDIR [ARCH]}
arch=${2:-x86_64}
arch_load "$arch" || exit 2
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/kernel.path"

die() { echo "build.sh: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

"$here/deps.sh"
"$here/$A_DEPS"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

t0=$(now)
kernel=$("$here/build-kernel.sh" "$arch" | tail -n 1)
[[ -s $kernel ]] || die "build-kernel.sh $arch gave no kernel"
t1=$(now)
echo "build.sh: $arch kernel $kernel ($(secs "$t0" "$t1") s)" >&2

if [[ $A_BUILD == native ]]; then
  command -v cargo >/dev/null || die "cargo not found in PATH (install rustup / a Rust toolchain)"
  echo "build.sh: cargo build --release -p snapinit" >&2
  (cd "$repo" && cargo build --release -p snapinit) >&2 || die "cargo build -p snapinit failed"
  # stripped, as cross.sh does: the sizes the tests report are what a router would carry
  strip -R .comment -o "$out/snapinit" "$CARGO_TARGET_DIR/release/snapinit"
  t2=$(now)
  # snapshot: static musl, std built for size (docs/SIZE.md): Debian's rustc-web with
  # -Zbuild-std, as cross.sh; musl-tools links. With panic=immediate-abort nothing unwinds,
  # but std still names -lunwind: gcc's own unwinder (libgcc_eh.a) stands in for it.
  # A unit's build, as cross.sh makes it: the fleet client without the build host's commands
  # (fleet-admin) and without progress bars; the host's own tool (SNAPSHOT_HOST) has them.
  "$here/deps.sh" rustc-web cargo-web rust-web-src musl-tools
  musl=${A_TRIPLE/-gnu/-musl} unw=$CARGO_TARGET_DIR/musl-unwind
  # Replaced, never rewritten in place: two runs of this script may overlap (qemu/suite.sh).
  mkdir -p "$unw" && cp "$(gcc -print-file-name=libgcc_eh.a)" "$unw/libunwind.a.$$" &&
    mv -f "$unw/libunwind.a.$$" "$unw/libunwind.a"
  echo "build.sh: cargo build --release -p snapshot (static, $musl)" >&2
  (cd "$repo" && RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTFLAGS="-C linker=musl-gcc \
-C link-self-contained=no -C relocation-model=static -C target-feature=+crt-static \
-L native=$unw -Zunstable-options -C panic=immediate-abort -C force-unwind-tables=no \
--cfg curve25519_dalek_backend=\"serial\"" /usr/bin/cargo build --release -p snapshot \
    --no-default-features --features fleet --target "$musl" -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size) >&2 ||
    die "cargo build -p snapshot failed"
  strip -R .comment -o "$out/snapshot" "$CARGO_TARGET_DIR/$musl/release/snapshot"
  t3=$(now)
  "$out/snapshot" --version >/dev/null || die "$out/snapshot does not run on the host"
else
  "$here/cross.sh" "$arch" "$out" || die "cross.sh $arch failed"
  t3=$(now)
  # cross.sh's own split of its time
  t2=$(awk -v a="$t1" '$1 == "snapinit" {s += $2} $1 == "prepare" {s += $2} END{printf "%.3f", a + s}' "$out/build-times")
fi

# ubimkvol: the guests' busybox has no UBI applets; the nandsim scenario creates its volume
# with this one ioctl. Static C with the table's gcc (glibc; the cross ones are installed
# for `snapshot` already).
${A_CC:-gcc} -static -Os -Wall -o "$out/ubimkvol" "$here/ubimkvol.c" ||
  die "ubimkvol.c does not build with ${A_CC:-gcc}"
$A_STRIP "$out/ubimkvol"

for b in snapinit snapshot ubimkvol; do
  desc=$(file -b "$out/$b")
  [[ $desc =~ $A_ELF ]] || die "$b is not a $arch ELF ($A_ELF): $desc"
  [[ $desc == *static* && $desc != *dynamically* ]] ||
    die "$b is not statically linked (the rootfs has no libc): $desc"
done
# The placeholder PID 1 (from a workspace build) lacks the boot path's messages.
grep -aq 'nothing to replay' "$out/snapinit" ||
  die "$out/snapinit looks like the placeholder PID 1 (built together with the workspace?)"

bb=()
if [[ $A_DEB != host ]]; then
  busybox=$("$here/busybox.sh" "$arch" | tail -n 1) || die "busybox.sh $arch failed"
  bb=(--busybox "$busybox" --busybox-list "${busybox%/*}/busybox.list")
fi
"$here/mkrootfs.sh" "$out/rootfs.squashfs" "${bb[@]}" --snapinit "$out/snapinit" \
  --snapshot "$out/snapshot" --agent "$here/agent.sh" --add "$out/ubimkvol:/sbin/ubimkvol" >&2
t4=$(now)
printf 'kernel %s\nsnapinit %s\nsnapshot %s\nrootfs %s\n' "$(secs "$t0" "$t1")" \
  "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$(secs "$t3" "$t4")" >"$out/build-times"
echo "build.sh: $arch built in $(secs "$t0" "$t4") s: $(tr '\n' ' ' <"$out/build-times")" >&2
echo "$kernel" >"$out/kernel.path"
echo "$kernel"
