#!/usr/bin/env bash
# Build (or reuse) the tiny x86_64 test kernel.
#   qemu/build-kernel.sh [x86_64]
# Last line of stdout is the path of the bzImage; progress goes to stderr.
set -euo pipefail

arch=${1:-x86_64}
if [[ $arch != x86_64 ]]; then
  echo "build-kernel.sh: only x86_64 is supported (got '$arch')" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/deps.sh"

fragment=$here/$arch.config
src_pkg=linux-source-6.1
src_tar=/usr/src/$src_pkg.tar.xz
cache=${SNAPINIT_CACHE:-$HOME/.cache/snapinit}
mkdir -p "$cache"

pkg_ver=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$({ cat "$fragment"; echo "$src_pkg $pkg_ver"; } | sha256sum | cut -c1-16)
out_dir=$cache/kernel-$arch-$key
bzimage=$out_dir/bzImage

if [[ -s $bzimage ]]; then
  echo "build-kernel.sh: cached $bzimage" >&2
  echo "$bzimage"
  exit 0
fi

# Serialize concurrent builders (parallel test jobs); re-check after the wait.
exec 9>"$cache/.build-kernel.lock"
flock 9
if [[ -s $bzimage ]]; then
  echo "build-kernel.sh: cached $bzimage" >&2
  echo "$bzimage"
  exit 0
fi

start=$(date +%s)

# 1. Source tree, extracted once per package version (shared by all configs).
src_dir=$cache/src-$src_pkg-$pkg_ver
if [[ ! -f $src_dir/.extracted ]]; then
  echo "build-kernel.sh: extracting $src_tar" >&2
  rm -rf "$src_dir" "$src_dir.tmp"
  mkdir -p "$src_dir.tmp"
  tar -xJf "$src_tar" -C "$src_dir.tmp" --strip-components=1
  touch "$src_dir.tmp/.extracted"
  mv "$src_dir.tmp" "$src_dir"
fi

# 2. Out-of-tree build dir per config key.
build_dir=$cache/build-$arch-$key
mkdir -p "$build_dir"
mk=(make -C "$src_dir" O="$build_dir" ARCH="$arch" -s)

echo "build-kernel.sh: configuring in $build_dir" >&2
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
  echo "build-kernel.sh: FAIL: fragment symbols not applied (missing dependency?):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

# 4. Build.
echo "build-kernel.sh: building bzImage with -j$(nproc)" >&2
"${mk[@]}" -j"$(nproc)" bzImage >&2

mkdir -p "$out_dir.tmp"
cp "$build_dir/arch/x86/boot/bzImage" "$out_dir.tmp/bzImage"
cp "$build_dir/.config" "$out_dir.tmp/config"
rm -rf "$out_dir"
mv "$out_dir.tmp" "$out_dir"

end=$(date +%s)
echo "build-kernel.sh: built in $((end - start)) s ($(stat -c %s "$bzimage") bytes)" >&2
echo "$bzimage"
