#!/usr/bin/env bash
# Fetch (or reuse) Debian's static busybox for a foreign architecture of qemu/arch.sh.
#   qemu/busybox.sh ARCH          (mipsel, mips, arm, aarch64: A_DEB is armhf, arm64, ...)
# Last stdout line: the path of the busybox binary; a second file beside it,
# busybox.list, holds its `--list-full` (run under the table's qemu-user-static), for
# `mkrootfs.sh --busybox P --busybox-list L`. Cached in
# ~/.cache/snapinit/busybox-<arch>-<version>/ (SNAPINIT_CACHE overrides).
# Adds the dpkg architecture (dpkg --add-architecture + apt-get update) once.
# Debian bookworm has no big-endian mips port any more: when the architecture
# has no busybox-static package, Debian's busybox *source* package is fetched
# with apt-get source (through a private deb-src list: the system's apt
# configuration is not touched) and built with Debian's own static config
# (debian/config/pkg/static) and the table's cross gcc + glibc.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/arch.sh"
arch=${1:?usage: busybox.sh ARCH}
arch_load "$arch" || exit 2
[[ $A_DEB != host ]] || { echo "busybox.sh: $arch uses the host's busybox-static" >&2; exit 2; }
deb=$A_DEB
"$here/$A_DEPS"
cache=${SNAPINIT_CACHE:-$HOME/.cache/snapinit}
mkdir -p "$cache"
exec 9>"$cache/.busybox-$arch.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
# Does the release carry this architecture at all (its Release file says)?
ported=0
for r in /var/lib/apt/lists/*_dists_"${codename}"_InRelease /var/lib/apt/lists/*_dists_"${codename}"_Release; do
  [[ -f $r ]] || continue
  if grep -qE "^Architectures:.* $deb( |\$)" "$r"; then ported=1; fi
  break
done
ver=
if ((ported)); then
  if ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
    [[ $(id -u) -eq 0 ]] || { echo "busybox.sh: run as root (dpkg --add-architecture $deb)" >&2; exit 1; }
    echo "busybox.sh: dpkg --add-architecture $deb; apt-get update" >&2
    dpkg --add-architecture "$deb"
    # A list that fails to download (a mirror mid-sync) matters only if busybox-static's does.
    apt-get -o DPkg::Lock::Timeout=1200 update -qq >&2 || echo "busybox.sh: apt-get update had errors" >&2
  fi
  ver=$(apt-cache policy "busybox-static:$deb" | awk '/Candidate:/ {print $2}')
  if [[ -z $ver || $ver == "(none)" ]]; then
    apt-get -o DPkg::Lock::Timeout=1200 update -qq >&2 || echo "busybox.sh: apt-get update had errors" >&2
    ver=$(apt-cache policy "busybox-static:$deb" | awk '/Candidate:/ {print $2}')
  fi
fi

from_source() { # build Debian's busybox source with the static flavour's config
  local aptdir src_ver d
  aptdir=$cache/apt-src
  mkdir -p "$aptdir/lists/partial"
  # The source lines name the mirror the system's own binary lines use.
  local uri
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' |
    awk -v c="$codename" '$2 == c && $3 == "deb" {print $1; exit}')
  [[ -n $uri ]] || { echo "busybox.sh: no apt source for $codename" >&2; return 1; }
  echo "deb-src $uri $codename main" >"$aptdir/sources.list"
  local A=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o Dir::State::Lists="$aptdir/lists")
  [[ -n $(ls "$aptdir/lists" 2>/dev/null | grep -v partial) ]] || apt-get "${A[@]}" update -qq >&2
  src_ver=$(apt-cache "${A[@]}" showsrc busybox | awk '/^Version:/ {print $2; exit}')
  [[ -n $src_ver ]] || { echo "busybox.sh: no busybox source package" >&2; return 1; }
  dir=$cache/busybox-$arch-${src_ver//[:\/]/_}-src
  [[ -s $dir/busybox && -s $dir/busybox.list ]] && return 0
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-busybox.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  chmod 0777 "$tmp" # apt's _apt user writes the download
  echo "busybox.sh: no busybox-static:$deb; building Debian's busybox $src_ver from source" >&2
  (cd "$tmp" && apt-get "${A[@]}" source -q --download-only "busybox=$src_ver" >&2)
  (cd "$tmp" && dpkg-source -x --no-check busybox_*.dsc src >/dev/null)
  d=$tmp/build
  mkdir -p "$d"
  cat "$tmp/src/debian/config/os/linux" "$tmp/src/debian/config/pkg/static" >"$d/.config"
  local mk=(make -s -C "$d" -f "$tmp/src/Makefile" KBUILD_SRC="$tmp/src" CROSS_COMPILE="$A_KCROSS")
  if ! { (cd "$tmp/src" && { yes "" || true; } | "${mk[@]}" silentoldconfig) &&
    (cd "$tmp/src" && "${mk[@]}" -j"$(nproc)" busybox); } >"$tmp/build.log" 2>&1; then
    tail -n 30 "$tmp/build.log" >&2
    echo "busybox.sh: busybox build failed" >&2
    return 1
  fi
  file -b "$d/busybox" | grep -q 'statically linked' || { echo "busybox.sh: $d/busybox is not static" >&2; return 1; }
  "$A_QEMU_USER" "$d/busybox" --list-full >"$tmp/busybox.list"
  [[ -s $tmp/busybox.list ]] || { echo "busybox.sh: cannot run the built busybox" >&2; return 1; }
  mkdir -p "$dir"
  install -m 0755 "$d/busybox" "$dir/busybox"
  mv "$tmp/busybox.list" "$dir/busybox.list"
}

if [[ -z $ver || $ver == "(none)" ]]; then
  from_source || exit 1
  echo "$dir/busybox"
  exit 0
fi

dir=$cache/busybox-$arch-${ver//[:\/]/_}
if [[ ! -s $dir/busybox || ! -s $dir/busybox.list ]]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-busybox.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "busybox.sh: apt-get download busybox-static:$deb ($ver)" >&2
  chmod 0755 "$tmp" # apt's _apt user writes the .deb
  (cd "$tmp" && apt-get download -q "busybox-static:$deb=$ver" >&2)
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
  qemu=$A_QEMU_USER
  "$qemu" "$tmp/x/bin/busybox" --list-full >"$tmp/busybox.list"
  [[ -s $tmp/busybox.list ]] || { echo "busybox.sh: $qemu could not run busybox --list-full" >&2; exit 1; }
  mkdir -p "$dir"
  install -m 0755 "$tmp/x/bin/busybox" "$dir/busybox"
  mv "$tmp/busybox.list" "$dir/busybox.list"
fi
echo "$dir/busybox"
