#!/usr/bin/env bash
# Cross-build snapinit (PID 1, no_std, no libc) and snapshot (std, static musl or glibc) for one
# architecture of qemu/arch.sh (A_BUILD=cross: mipsel, mips, arm, aarch64), from this
# repository's working tree.
#   qemu/cross.sh ARCH OUTDIR
#   SNAPSHOT_FLEET=yes|no qemu/cross.sh ARCH OUTDIR
#       the tool with or without the fleet client on a unit (OpenWrt's snapshot-fleet or
#       snapshot package, docs/SIZE.md); default: the table's A_FLEET (MIPS: no). Either is
#       a unit's build: never the build host's commands (cargo feature fleet-admin) nor
#       progress bars (feature progress).
#   SNAPSHOT_TOOL_FEATURES="..." overrides the table's A_TOOL_FEATURES ('' : none).
# Produces OUTDIR/snapinit and OUTDIR/snapshot (both static, stripped) and
# OUTDIR/build-times. Progress goes to stderr; fails loudly.
#
# Route (rustup cannot fetch other targets here): Debian's rustc-web/cargo-web
# 1.96 (/usr/bin/rustc, /usr/bin/cargo) + rust-web-src (the std sources),
# RUSTC_BOOTSTRAP=1 and -Zbuild-std; the table's gcc (A_CC) links, and the
# static glibc for snapshot comes from libc6-dev-<arch>-cross.
#  * snapinit: -Zbuild-std=core,compiler_builtins with core's optimize_for_size
#    (its smaller variants: -2,464 B on mipsel), -C relocation-model=static (a
#    static non-PIE ELF: no GOT loads, ~20% smaller than PIC), no unwind tables,
#    4 KiB pages, no build id, plus the table's A_RUSTFLAGS (MIPS: rustix's
#    raw-syscall backend, --cfg rustix_use_experimental_asm; without it rustix
#    falls back to libc). Where the table names a rustix patch (A_RUSTIX: MIPS,
#    qemu/patch-rustix-mips.py says why), a patched copy of rustix is used.
#  * snapshot: -Zbuild-std=std,panic_abort with std's optimize_for_size,
#    +crt-static, and the size flags of docs/SIZE.md (SNAPSHOT_SIZE_RUSTFLAGS:
#    panic=immediate-abort, no unwind tables, curve25519's serial backend);
#    rustix uses its libc backend there. Linked against musl, OpenWrt's libc, where
#    Debian ships it for the architecture (A_MUSL: musl-dev:<A_DEB>, whose gcc wrapper
#    links; about 0.8 MB smaller than static glibc on mipsel), else static glibc
#    (libc6-dev-<arch>-cross).
# The build runs in a copy of the working tree under the target dir
# (CARGO_TARGET_DIR, default <repo>/target): a rustix [patch] must not touch
# the repository's Cargo.toml/Cargo.lock.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/arch.sh"
arch=${1:?usage: cross.sh ARCH OUTDIR}
out=${2:?usage: cross.sh ARCH OUTDIR}
arch_load "$arch" || exit 2
[[ $A_BUILD == cross ]] || { echo "cross.sh: $arch is built natively (qemu/build.sh)" >&2; exit 2; }
triple=$A_TRIPLE gcc=$A_CC strip=$A_STRIP
mkdir -p "$out"
out=$(cd "$out" && pwd)
die() { echo "cross.sh: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

"$here/$A_DEPS"
tdir=${CARGO_TARGET_DIR:-$repo/target}
work=$tdir/cross-src
export CARGO_TARGET_DIR=$tdir
export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
cargo=/usr/bin/cargo
[[ -x $RUSTC && -x $cargo && -d /usr/lib/rustlib/src/rust/library ]] ||
  die "Debian's rustc-web/cargo-web/rust-web-src are not installed"
# What makes the tool small (docs/SIZE.md): a panic aborts at once (no message, no
# backtrace symbolizer), no unwind tables, curve25519-dalek's portable backend.
SNAPSHOT_SIZE_RUSTFLAGS='-Zunstable-options -C panic=immediate-abort -C force-unwind-tables=no --cfg curve25519_dalek_backend="serial"'
linker_var=CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER
export "$linker_var=$gcc"

t0=$(now)
# 1. A copy of the tree (tracked + new files), serialized between callers.
mkdir -p "$tdir"
exec 9>"$tdir/.cross.lock"
flock 9
mkdir -p "$work"
(cd "$repo" && git ls-files -z -co --exclude-standard -- . ':!target' ':!qemu' |
  tar --null -T - -cf -) | tar -xf - -C "$work"
# Files deleted from the tree must not linger in the copy's sources.
(cd "$repo" && git ls-files -co --exclude-standard -- src userland boot linker) | sort >"$work/.files"
(cd "$work" && find src userland/src boot linker -type f 2>/dev/null | sort) |
  comm -13 "$work/.files" - | (cd "$work" && xargs -r rm -f)

# 2. rustix, patched where the table says so, as a [patch] of the copy.
if [[ -n $A_RUSTIX ]]; then
  (cd "$work" && $cargo fetch -q) >&2
  rustix_src=$(cd "$work" && $cargo metadata -q --format-version 1 |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="rustix"))')
  rustix_src=$(dirname "$rustix_src")
  rustix_ver=$(basename "$rustix_src")
  stamp=$(sha256sum <"$here/$A_RUSTIX" | cut -c1-16)
  pdir=$tdir/cross-rustix/${A_RUSTIX%.py}/$rustix_ver
  if [[ $(cat "$pdir/.patched" 2>/dev/null) != "$stamp" ]]; then
    rm -rf "$pdir"
    mkdir -p "${pdir%/*}"
    cp -r "$rustix_src" "$pdir"
    python3 "$here/$A_RUSTIX" "$pdir"
    echo "$stamp" >"$pdir/.patched"
  fi
  printf '\n[patch.crates-io]\nrustix = { path = "%s" }\n' "$pdir" >>"$work/Cargo.toml"
fi
t1=$(now)

# 3. snapinit: PID 1 alone (a workspace build would unify std into it).
echo "cross.sh: snapinit for $triple" >&2
(cd "$work" && RUSTFLAGS="$A_RUSTFLAGS -C relocation-model=static \
-C force-unwind-tables=no -C link-arg=-Wl,-z,max-page-size=4096 -C link-arg=-Wl,--build-id=none" \
  $cargo build -q --release -p snapinit --target "$triple" \
  -Zbuild-std=core,compiler_builtins -Zbuild-std-features=optimize_for_size) >&2 ||
  die "cargo build -p snapinit ($triple) failed"
"$strip" -R .comment -o "$out/snapinit" "$tdir/$triple/release/snapinit"
t2=$(now)

# 4. snapshot: std, static musl (musl-dev:<A_DEB>) or static glibc (libc6-dev-<arch>-cross).
if [[ -n $A_MUSL ]]; then
  "$here/musl.sh" "$arch" || die "musl for $arch could not be installed"
  # With panic=immediate-abort nothing unwinds, but std names -lunwind: the cross gcc's own
  # unwinder (libgcc_eh.a) stands in for it, as in qemu/build.sh.
  unw=$tdir/musl-unwind-$arch
  mkdir -p "$unw" && cp "$("$gcc" -print-file-name=libgcc_eh.a)" "$unw/libunwind.a"
  tool_triple=$A_MUSL
  tool_flags="-C linker=$A_MUSL_CC -C link-self-contained=no -C relocation-model=static -L native=$unw"
else
  tool_triple=$triple tool_flags=
fi
fleet=${SNAPSHOT_FLEET:-$A_FLEET}
tool_features=${SNAPSHOT_TOOL_FEATURES-$A_TOOL_FEATURES}
case $fleet in
  yes) features=(--no-default-features --features "fleet $tool_features") ;;
  no) features=(--no-default-features --features "$tool_features") ;;
  *) die "SNAPSHOT_FLEET is yes or no, not $fleet" ;;
esac
echo "cross.sh: snapshot for $tool_triple (fleet: $fleet; features: ${tool_features:-none})" >&2
(cd "$work" && RUSTFLAGS="$tool_flags -C target-feature=+crt-static -C link-arg=-Wl,-z,max-page-size=4096 $SNAPSHOT_SIZE_RUSTFLAGS" \
  $cargo build -q --release -p snapshot "${features[@]}" --target "$tool_triple" -Zbuild-std=std,panic_abort \
  -Zbuild-std-features=optimize_for_size) >&2 ||
  die "cargo build -p snapshot ($tool_triple) failed"
"$strip" -R .comment -o "$out/snapshot" "$tdir/$tool_triple/release/snapshot"
t3=$(now)

for b in snapinit snapshot; do
  d=$(file -b "$out/$b")
  [[ $d =~ $A_ELF ]] || die "$b is not a $arch ELF ($A_ELF): $d"
  [[ $d == *static* && $d != *dynamically* ]] || die "$b is not static: $d"
done
grep -aq 'nothing to replay' "$out/snapinit" || die "$out/snapinit looks like the placeholder PID 1"
"$A_QEMU_USER" "$out/snapshot" --version >/dev/null || die "snapshot does not run under $A_QEMU_USER"
# The variant asked for: `fleet` is a command exactly when the fleet client is in.
if "$A_QEMU_USER" "$out/snapshot" fleet --help >/dev/null 2>&1; then has=yes; else has=no; fi
[[ $has == "$fleet" ]] || die "snapshot built with fleet=$fleet, but its fleet command: $has"
! "$A_QEMU_USER" "$out/snapshot" bundle create --help >/dev/null 2>&1 ||
  die "snapshot for a unit has the build host's \`bundle create\`"
printf 'prepare %s\nsnapinit %s\nsnapshot %s\n' "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" \
  "$(secs "$t2" "$t3")" >"$out/build-times"
echo "cross.sh: $arch snapinit $(stat -c %s "$out/snapinit") bytes, snapshot $(stat -c %s "$out/snapshot") bytes (stripped); $(tr '\n' ' ' <"$out/build-times")" >&2
