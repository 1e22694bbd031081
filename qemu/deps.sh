#!/usr/bin/env bash
# Install everything the QEMU boot tests need (Debian bookworm, run as root).
#   qemu/deps.sh [EXTRA_PACKAGE...]     (deps-mips.sh passes the MIPS ones)
# Idempotent: quiet and fast when everything is already present.
set -euo pipefail

pkgs=(
  qemu-system-x86 squashfs-tools busybox-static linux-source-6.1
  make gcc flex bison bc libelf-dev libssl-dev xz-utils cpio python3
  mtd-utils
  "$@"
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Other builds on the machine may hold the dpkg lock: wait for it rather than fail.
lock=(-o DPkg::Lock::Timeout=1200)
for try in 1 2 3; do apt-get "${lock[@]}" update -qq >&2 && break; sleep 20; done
apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
