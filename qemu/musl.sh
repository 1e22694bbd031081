#!/usr/bin/env bash
# Install Debian's musl for a foreign architecture of qemu/arch.sh (its A_MUSL row), from
# the package archive: the dpkg architecture (added once, as qemu/busybox.sh does) and
# musl-dev:<A_DEB>, whose gcc wrapper (A_MUSL_CC) links the static `snapshot`.
#   qemu/musl.sh ARCH
# Idempotent: quiet and fast when it is installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/arch.sh"
arch=${1:?usage: musl.sh ARCH}
arch_load "$arch" || exit 2
[[ -n $A_MUSL ]] || { echo "musl.sh: $arch has no musl row (A_MUSL)" >&2; exit 2; }
command -v "$A_MUSL_CC" >/dev/null && exit 0
[[ $(id -u) -eq 0 ]] || { echo "musl.sh: run as root (apt-get install musl-dev:$A_DEB)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
lock=(-o DPkg::Lock::Timeout=1200)
if ! dpkg --print-foreign-architectures | grep -qx "$A_DEB"; then
  echo "musl.sh: dpkg --add-architecture $A_DEB" >&2
  dpkg --add-architecture "$A_DEB"
fi
if [[ -z $(apt-cache policy "musl-dev:$A_DEB" | awk '/Candidate:/ && $2 != "(none)" {print $2}') ]]; then
  for try in 1 2 3; do apt-get "${lock[@]}" update -qq >&2 && break; sleep 20; done
fi
echo "musl.sh: installing musl-dev:$A_DEB" >&2
apt-get "${lock[@]}" install -y -qq --no-install-recommends "musl-dev:$A_DEB" >&2
command -v "$A_MUSL_CC" >/dev/null || { echo "musl.sh: $A_MUSL_CC missing after the install" >&2; exit 1; }
