#!/usr/bin/env bash
# Install what the MIPS malta tests need on top of deps.sh (Debian bookworm,
# run as root). Idempotent: quiet and fast when everything is present.
#   qemu/deps-mips.sh
# Cross toolchains (gcc + glibc for mipsel and mips), Debian's Rust 1.96
# (rustc-web, cargo-web, rust-web-src: the source of core/std for
# -Zbuild-std), qemu-system-mips (both mips and mipsel malta), qemu-user-static.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/deps.sh"

pkgs=(
  gcc-mipsel-linux-gnu libc6-dev-mipsel-cross
  gcc-mips-linux-gnu libc6-dev-mips-cross
  rustc-web cargo-web rust-web-src
  qemu-system-mips qemu-user-static file
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps-mips.sh: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "deps-mips.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
