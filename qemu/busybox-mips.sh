#!/usr/bin/env bash
# Fetch (or reuse) Debian's static busybox for a MIPS architecture.
#   qemu/busybox-mips.sh [mipsel|mips]          (default mipsel)
# Last stdout line: the path of the busybox binary; a second file beside it,
# busybox.list, holds its `--list-full` (run under qemu-user-static), for
# `mkrootfs.sh --busybox P --busybox-list L`. Cached in
# ~/.cache/snapinit/busybox-<arch>-<version>/ (SNAPINIT_CACHE overrides).
# Adds the dpkg architecture (dpkg --add-architecture + apt-get update) once.
set -euo pipefail

arch=${1:-mipsel}
case $arch in
  mipsel | mips) ;;
  *) echo "busybox-mips.sh: arch must be mipsel or mips (got '$arch')" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/deps-mips.sh"
cache=${SNAPINIT_CACHE:-$HOME/.cache/snapinit}
mkdir -p "$cache"
exec 9>"$cache/.busybox-$arch.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  [[ $(id -u) -eq 0 ]] || { echo "busybox-mips.sh: run as root (dpkg --add-architecture $arch)" >&2; exit 1; }
  echo "busybox-mips.sh: dpkg --add-architecture $arch; apt-get update" >&2
  dpkg --add-architecture "$arch"
  apt-get update -qq >&2
fi
ver=$(apt-cache policy "busybox-static:$arch" | awk '/Candidate:/ {print $2}')
if [[ -z $ver || $ver == "(none)" ]]; then
  apt-get update -qq >&2
  ver=$(apt-cache policy "busybox-static:$arch" | awk '/Candidate:/ {print $2}')
fi
[[ -n $ver && $ver != "(none)" ]] || { echo "busybox-mips.sh: no busybox-static:$arch candidate" >&2; exit 1; }

dir=$cache/busybox-$arch-${ver//[:\/]/_}
if [[ ! -s $dir/busybox || ! -s $dir/busybox.list ]]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-busybox.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "busybox-mips.sh: apt-get download busybox-static:$arch ($ver)" >&2
  chmod 0755 "$tmp" # apt's _apt user writes the .deb
  (cd "$tmp" && apt-get download -q "busybox-static:$arch=$ver" >&2)
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
  qemu=qemu-$arch-static
  "$qemu" "$tmp/x/bin/busybox" --list-full >"$tmp/busybox.list"
  [[ -s $tmp/busybox.list ]] || { echo "busybox-mips.sh: $qemu could not run busybox --list-full" >&2; exit 1; }
  mkdir -p "$dir"
  install -m 0755 "$tmp/x/bin/busybox" "$dir/busybox"
  mv "$tmp/busybox.list" "$dir/busybox.list"
fi
echo "$dir/busybox"
