#!/usr/bin/env bash
# Build (or reuse) a tiny Linux 6.1 test kernel from Debian's linux-source-6.1.
#   qemu/build-kernel.sh [ARCH]      (default x86_64; the architectures of qemu/arch.sh)
# tinyconfig + the architecture's fragment (qemu/arch.sh: A_KFRAG, A_KEXTRA), cross-built where
# the table names a cross compiler; the image QEMU boots (A_KTARGET: bzImage, malta vmlinux,
# zImage, Image). Last line of stdout is the kernel's path; progress goes to stderr. Cached in
# ~/.cache/snapinit/kernel-<A_KNAME>-<key>/ (SNAPINIT_CACHE overrides), key = first 16 hex of
# sha256(fragment + extra lines + linux-source package version); every fragment symbol is
# checked to have really ended up set, with its value (a missing dependency fails the build
# with the list).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/arch.sh"
arch=${1:-x86_64}
arch_load "$arch" || exit 2
name=$A_KNAME karch=$A_KARCH cross=$A_KCROSS target=$A_KTARGET image=$A_KIMAGE
fragment_text=$(
  cat "$here/$A_KFRAG"
  if [[ -n $A_KEXTRA ]]; then echo; echo "# $arch (qemu/arch.sh)"; printf '%s\n' $A_KEXTRA; fi
)
"$here/$A_DEPS"

src_pkg=linux-source-6.1
src_tar=/usr/src/$src_pkg.tar.xz
cache=${SNAPINIT_CACHE:-$HOME/.cache/snapinit}
mkdir -p "$cache"

pkg_ver=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$({ echo "$fragment_text"; echo "$src_pkg $pkg_ver"; } | sha256sum | cut -c1-16)
out_dir=$cache/kernel-$name-$key
kernel=$out_dir/$target

cached() {
  if [[ -s $kernel ]]; then
    echo "build-kernel.sh: cached $kernel" >&2
    echo "$kernel"
    exit 0
  fi
}
cached
# Serialize concurrent builders of this kernel; re-check after the wait.
exec 9>"$cache/.build-kernel-$name.lock"
flock 9
cached

start=$(date +%s)

# 1. Source tree, extracted once per package version and shared by every kernel.
src_dir=$cache/src-$src_pkg-$pkg_ver
if [[ ! -f $src_dir/.extracted ]]; then
  exec 8>"$cache/.build-kernel-src.lock"
  flock 8
  if [[ ! -f $src_dir/.extracted ]]; then
    echo "build-kernel.sh: extracting $src_tar" >&2
    rm -rf "$src_dir" "$src_dir.tmp"
    mkdir -p "$src_dir.tmp"
    tar -xJf "$src_tar" -C "$src_dir.tmp" --strip-components=1
    touch "$src_dir.tmp/.extracted"
    mv "$src_dir.tmp" "$src_dir"
  fi
  exec 8>&-
fi

# 2. Out-of-tree build dir per config key.
build_dir=$cache/build-$name-$key
mkdir -p "$build_dir"
fragment=$build_dir/fragment.config
echo "$fragment_text" >"$fragment"
mk=(make -C "$src_dir" O="$build_dir" ARCH="$karch" -s)
[[ -n $cross ]] && mk+=(CROSS_COMPILE="$cross")

echo "build-kernel.sh: configuring $name in $build_dir" >&2
cfg_log=$build_dir/config.log
if ! {
  "${mk[@]}" tinyconfig &&
    (cd "$build_dir" && "$src_dir/scripts/kconfig/merge_config.sh" -m -O "$build_dir" \
      "$build_dir/.config" "$fragment") &&
    "${mk[@]}" olddefconfig
} >"$cfg_log" 2>&1; then
  cat "$cfg_log" >&2
  echo "build-kernel.sh: FAIL: kernel configuration failed" >&2
  exit 1
fi

# 3. Verify the fragment survived dependency resolution.
missing=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.+)$ ]]; then
    sym=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
    grep -qxF "$sym=$val" "$build_dir/.config" || missing+=("$sym=$val (got: $(grep -E "^(# )?${sym}[= ]" "$build_dir/.config" || echo absent))")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    sym=${BASH_REMATCH[1]}
    if grep -qx "$sym=y" "$build_dir/.config"; then
      missing+=("$sym must be off (got: $sym=y)")
    fi
  fi
done <"$fragment"
if ((${#missing[@]} > 0)); then
  echo "build-kernel.sh: FAIL: fragment symbols not applied (missing dependency?):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

# 4. Build.
echo "build-kernel.sh: building $target ($name) with -j$(nproc)" >&2
nice "${mk[@]}" -j"$(nproc)" "$target" >&2

mkdir -p "$out_dir.tmp"
cp "$build_dir/$image" "$out_dir.tmp/$target"
cp "$build_dir/.config" "$out_dir.tmp/config"
rm -rf "$out_dir"
mv "$out_dir.tmp" "$out_dir"

end=$(date +%s)
echo "build-kernel.sh: built in $((end - start)) s ($(stat -c %s "$kernel") bytes)" >&2
echo "$kernel"
