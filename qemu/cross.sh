#!/usr/bin/env bash
# Cross-build snapinit (PID 1, no_std, no libc) and snapshot (std, static glibc)
# for 32-bit MIPS Linux, from this repository's working tree.
#   qemu/cross.sh [mipsel|mips] OUTDIR          (default mipsel = little-endian)
# Produces OUTDIR/snapinit and OUTDIR/snapshot (both static, stripped) and
# OUTDIR/build-times. Progress goes to stderr; fails loudly.
#
# Route (rustup cannot fetch other targets here): Debian's rustc-web/cargo-web
# 1.96 (/usr/bin/rustc, /usr/bin/cargo) + rust-web-src (the std sources),
# RUSTC_BOOTSTRAP=1 and -Zbuild-std; gcc-<arch>-linux-gnu links, and the
# static glibc for snapshot comes from libc6-dev-<arch>-cross.
#  * snapinit: -Zbuild-std=core,compiler_builtins, rustix's raw-syscall backend
#    (--cfg rustix_use_experimental_asm; without it rustix falls back to libc),
#    -C relocation-model=static (a static non-PIE ELF: no GOT loads, ~20% smaller
#    than PIC), no unwind tables, 4 KiB pages, no build id. rustix's o32 syscall
#    asm is patched to preserve $at, and its raw backend enabled for big-endian
#    o32 too (qemu/patch-rustix-mips.py says why).
#  * snapshot: -Zbuild-std=std,panic_abort, +crt-static; rustix uses its libc
#    backend there (glibc's syscall wrappers get the o32 clobbers right).
# The build runs in a copy of the working tree under the target dir
# (CARGO_TARGET_DIR, default <repo>/target): the rustix [patch] must not touch
# the repository's Cargo.toml/Cargo.lock.
set -euo pipefail

arch=${1:-mipsel}
out=${2:?usage: cross.sh [mipsel|mips] OUTDIR}
case $arch in
  mipsel) triple=mipsel-unknown-linux-gnu gcc=mipsel-linux-gnu-gcc strip=mipsel-linux-gnu-strip desc='LSB.*MIPS' ;;
  mips) triple=mips-unknown-linux-gnu gcc=mips-linux-gnu-gcc strip=mips-linux-gnu-strip desc='MSB.*MIPS' ;;
  *) echo "cross.sh: arch must be mipsel or mips (got '$arch')" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
die() { echo "cross.sh: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

"$here/deps-mips.sh"
tdir=${CARGO_TARGET_DIR:-$repo/target}
work=$tdir/cross-src
export CARGO_TARGET_DIR=$tdir
export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
cargo=/usr/bin/cargo
[[ -x $RUSTC && -x $cargo && -d /usr/lib/rustlib/src/rust/library ]] ||
  die "Debian's rustc-web/cargo-web/rust-web-src are not installed"
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

# 2. rustix, patched for the o32 syscall clobber, as a [patch] of the copy.
(cd "$work" && $cargo fetch -q) >&2
rustix_src=$(cd "$work" && $cargo metadata -q --format-version 1 |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="rustix"))')
rustix_src=$(dirname "$rustix_src")
rustix_ver=$(basename "$rustix_src")
stamp=$(sha256sum <"$here/patch-rustix-mips.py" | cut -c1-16)
if [[ $(cat "$tdir/cross-rustix/$rustix_ver/.patched" 2>/dev/null) != "$stamp" ]]; then
  rm -rf "$tdir/cross-rustix/$rustix_ver"
  mkdir -p "$tdir/cross-rustix"
  cp -r "$rustix_src" "$tdir/cross-rustix/$rustix_ver"
  python3 "$here/patch-rustix-mips.py" "$tdir/cross-rustix/$rustix_ver"
  echo "$stamp" >"$tdir/cross-rustix/$rustix_ver/.patched"
fi
printf '\n[patch.crates-io]\nrustix = { path = "%s" }\n' "$tdir/cross-rustix/$rustix_ver" >>"$work/Cargo.toml"
t1=$(now)

# 3. snapinit: PID 1 alone (a workspace build would unify std into it).
echo "cross.sh: snapinit for $triple" >&2
(cd "$work" && RUSTFLAGS="--cfg rustix_use_experimental_asm -C relocation-model=static \
-C force-unwind-tables=no -C link-arg=-Wl,-z,max-page-size=4096 -C link-arg=-Wl,--build-id=none" \
  $cargo build -q --release -p snapinit --target "$triple" \
  -Zbuild-std=core,compiler_builtins) >&2 || die "cargo build -p snapinit ($triple) failed"
"$strip" -R .comment -o "$out/snapinit" "$tdir/$triple/release/snapinit"
t2=$(now)

# 4. snapshot: std, static glibc from libc6-dev-<arch>-cross.
echo "cross.sh: snapshot for $triple" >&2
(cd "$work" && RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,max-page-size=4096" \
  $cargo build -q --release -p snapshot --target "$triple" -Zbuild-std=std,panic_abort) >&2 ||
  die "cargo build -p snapshot ($triple) failed"
"$strip" -R .comment -o "$out/snapshot" "$tdir/$triple/release/snapshot"
t3=$(now)

for b in snapinit snapshot; do
  d=$(file -b "$out/$b")
  [[ $d =~ ELF\ 32-bit\ $desc ]] || die "$b is not a 32-bit $arch ELF: $d"
  [[ $d == *static* && $d != *dynamically* ]] || die "$b is not static: $d"
done
grep -aq 'nothing to replay' "$out/snapinit" || die "$out/snapinit looks like the placeholder PID 1"
"qemu-$arch-static" "$out/snapshot" --version >/dev/null || die "snapshot does not run under qemu-$arch-static"
printf 'prepare %s\nsnapinit %s\nsnapshot %s\n' "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" \
  "$(secs "$t2" "$t3")" >"$out/build-times"
echo "cross.sh: $arch snapinit $(stat -c %s "$out/snapinit") bytes, snapshot $(stat -c %s "$out/snapshot") bytes (stripped); $(tr '\n' ' ' <"$out/build-times")" >&2
