#!/usr/bin/env bash
# Build (or reuse) the tiny MIPS malta test kernel (32-bit, Linux 6.1).
#   qemu/build-kernel-malta.sh [mipsel|mips]      (default mipsel = little-endian)
# Last line of stdout is the path of the vmlinux (QEMU's malta loads the ELF);
# progress goes to stderr. Cached like build-kernel.sh in
# ~/.cache/snapinit/kernel-<arch>-malta-<key>/ (SNAPINIT_CACHE overrides), key =
# sha256(malta.config + endianness line + linux-source package version).
set -euo pipefail

arch=${1:-mipsel}
case $arch in
  mipsel) endian=CONFIG_CPU_LITTLE_ENDIAN=y cross=mipsel-linux-gnu- ;;
  mips) endian=CONFIG_CPU_BIG_ENDIAN=y cross=mips-linux-gnu- ;;
  *) echo "build-kernel-malta.sh: arch must be mipsel or mips (got '$arch')" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/deps-mips.sh"

src_pkg=linux-source-6.1
src_tar=/usr/src/$src_pkg.tar.xz
cache=${SNAPINIT_CACHE:-$HOME/.cache/snapinit}
mkdir -p "$cache"

pkg_ver=$(dpkg-query -W -f='${Version}' "$src_pkg")
fragment_text=$(cat "$here/malta.config"; echo; echo "# endianness ($arch)"; echo "$endian")
key=$({ echo "$fragment_text"; echo "$src_pkg $pkg_ver"; } | sha256sum | cut -c1-16)
out_dir=$cache/kernel-$arch-malta-$key
vmlinux=$out_dir/vmlinux

if [[ -s $vmlinux ]]; then
  echo "build-kernel-malta.sh: cached $vmlinux" >&2
  echo "$vmlinux"
  exit 0
fi

# Serialize concurrent builders of this kernel; re-check after the wait.
exec 9>"$cache/.build-kernel-malta-$arch.lock"
flock 9
if [[ -s $vmlinux ]]; then
  echo "build-kernel-malta.sh: cached $vmlinux" >&2
  echo "$vmlinux"
  exit 0
fi

start=$(date +%s)

# 1. Source tree, extracted once per package version (shared with build-kernel.sh,
#    under its lock).
src_dir=$cache/src-$src_pkg-$pkg_ver
if [[ ! -f $src_dir/.extracted ]]; then
  exec 8>"$cache/.build-kernel.lock"
  flock 8
  if [[ ! -f $src_dir/.extracted ]]; then
    echo "build-kernel-malta.sh: extracting $src_tar" >&2
    rm -rf "$src_dir" "$src_dir.tmp"
    mkdir -p "$src_dir.tmp"
    tar -xJf "$src_tar" -C "$src_dir.tmp" --strip-components=1
    touch "$src_dir.tmp/.extracted"
    mv "$src_dir.tmp" "$src_dir"
  fi
  exec 8>&-
fi

# 2. Out-of-tree build dir per config key.
build_dir=$cache/build-$arch-malta-$key
mkdir -p "$build_dir"
fragment=$build_dir/fragment.config
echo "$fragment_text" >"$fragment"
mk=(make -C "$src_dir" O="$build_dir" ARCH=mips CROSS_COMPILE="$cross" -s)

echo "build-kernel-malta.sh: configuring in $build_dir" >&2
cfg_log=$build_dir/config.log
if ! {
  "${mk[@]}" tinyconfig &&
    (cd "$build_dir" && "$src_dir/scripts/kconfig/merge_config.sh" -m -O "$build_dir" \
      "$build_dir/.config" "$fragment") &&
    "${mk[@]}" olddefconfig
} >"$cfg_log" 2>&1; then
  cat "$cfg_log" >&2
  echo "build-kernel-malta.sh: FAIL: kernel configuration failed" >&2
  exit 1
fi

# 3. Verify the fragment survived dependency resolution.
missing=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=y$ ]]; then
    sym=${BASH_REMATCH[1]}
    grep -qx "$sym=y" "$build_dir/.config" || missing+=("$sym=y (got: $(grep -E "^(# )?${sym}[= ]" "$build_dir/.config" || echo absent))")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    sym=${BASH_REMATCH[1]}
    if grep -qx "$sym=y" "$build_dir/.config"; then
      missing+=("$sym must be off (got: $sym=y)")
    fi
  fi
done <"$fragment"
if ((${#missing[@]} > 0)); then
  echo "build-kernel-malta.sh: FAIL: fragment symbols not applied (missing dependency?):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

# 4. Build.
echo "build-kernel-malta.sh: building vmlinux ($arch) with -j$(nproc)" >&2
"${mk[@]}" -j"$(nproc)" vmlinux >&2

mkdir -p "$out_dir.tmp"
cp "$build_dir/vmlinux" "$out_dir.tmp/vmlinux"
cp "$build_dir/.config" "$out_dir.tmp/config"
rm -rf "$out_dir"
mv "$out_dir.tmp" "$out_dir"

end=$(date +%s)
echo "build-kernel-malta.sh: built in $((end - start)) s ($(stat -c %s "$vmlinux") bytes)" >&2
echo "$vmlinux"
