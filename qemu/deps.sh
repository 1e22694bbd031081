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
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
