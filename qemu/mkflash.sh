#!/usr/bin/env bash
# Create an erased (all 0xFF) raw flash image for boot.sh --flash.
#   qemu/mkflash.sh OUT.img [SIZE_KIB]      (default 2048 KiB = 2 MiB)
# SIZE must be a multiple of the block2mtd erase size (64 KiB by default).
set -euo pipefail
out=${1:?usage: mkflash.sh OUT.img [SIZE_KIB]}
kib=${2:-2048}
if ((kib % 64 != 0)); then
  echo "mkflash.sh: size ${kib} KiB is not a multiple of 64 KiB" >&2
  exit 2
fi
head -c "$((kib * 1024))" /dev/zero | tr '\0' '\377' >"$out.tmp"
mv "$out.tmp" "$out"
