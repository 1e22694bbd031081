#!/usr/bin/env bash
# Create a raw flash image for boot.sh --flash.
#   qemu/mkflash.sh OUT.img [SIZE_KIB]       erased (all 0xFF) NOR flash (default 2048 KiB)
#   qemu/mkflash.sh --ubi [--volume-image FILE] [--volume-name NAME] OUT.img [SIZE_KIB]
#                                            the same flash holding UBI with one volume
#   qemu/mkflash.sh --ubi --geometry [SIZE_KIB]
#                                            prints "peb P leb L lebs N bytes B" (the volume)
# SIZE must be a multiple of the block2mtd erase size (64 KiB, boot.sh's default).
#
# --ubi: what `ubinize` makes for block2mtd (boot.sh --medium ubi): PEB = the 64 KiB erase
# size; min. I/O and sub-page 1 byte (block2mtd reports writesize 1); VID header at 64, right
# after the 64-byte EC header, so data at 128 and LEB = PEB - 128 = 65408 bytes. One dynamic
# volume (ID 0, default name rootfs_data) of fixed size: every LEB UBI can give a volume on
# this flash, PEBs - 4 (2 for the layout volume, 1 wear-levelling reserve, 1 for atomic LEB
# changes; no bad-block reserve, block2mtd cannot have bad blocks), the size autoresize would
# reach, but fixed so that the first attach does not rewrite the volume table. The image
# sequence number is fixed (reproducible images). --volume-image FILE: the volume's content
# (what `snapshot --device FILE --erase-size <LEB>` wrote; at most the volume's size);
# trailing all-0xFF LEBs of it stay unmapped, as an image builder would flash them. The
# unused PEBs stay 0xFF: UBI finds them empty on attach and formats them.
set -euo pipefail

ubi=0 geometry=0 volimg='' volname=rootfs_data args=()
while (($#)); do
  case $1 in
    --ubi) ubi=1; shift ;;
    --geometry) geometry=1; shift ;;
    --volume-image) volimg=${2:?}; shift 2 ;;
    --volume-name) volname=${2:?}; shift 2 ;;
    -*) echo "mkflash.sh: unknown option $1" >&2; exit 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if ((geometry)); then
  ((ubi)) || { echo "mkflash.sh: --geometry needs --ubi" >&2; exit 2; }
  out='' kib=${args[0]:-2048}
else
  out=${args[0]:?usage: mkflash.sh [--ubi [--volume-image FILE]] OUT.img [SIZE_KIB]}
  kib=${args[1]:-2048}
fi
if ((kib % 64 != 0)); then
  echo "mkflash.sh: size ${kib} KiB is not a multiple of 64 KiB" >&2
  exit 2
fi
if ((!ubi)); then
  head -c "$((kib * 1024))" /dev/zero | tr '\0' '\377' >"$out.tmp"
  mv "$out.tmp" "$out"
  exit 0
fi

peb=65536 vid=64
leb=$((peb - 2 * vid)) pebs=$((kib * 1024 / peb))
lebs=$((pebs - 4)) bytes=$(((pebs - 4) * (peb - 2 * vid)))
((lebs >= 1)) || { echo "mkflash.sh: ${kib} KiB is too small for UBI (5 PEBs at least)" >&2; exit 2; }
if ((geometry)); then
  echo "peb $peb leb $leb lebs $lebs bytes $bytes"
  exit 0
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/deps.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkflash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
image_line=''
if [[ -n $volimg ]]; then
  size=$(stat -c %s "$volimg")
  ((size <= bytes)) || {
    echo "mkflash.sh: $volimg is $size bytes, the volume holds $bytes ($lebs LEBs of $leb)" >&2
    exit 2
  }
  # The mapped part: up to the last LEB that is not all 0xFF.
  used=$(python3 - "$volimg" "$leb" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
leb = int(sys.argv[2])
n = (len(data) + leb - 1) // leb
while n and data[(n - 1) * leb:n * leb].count(0xFF) == len(data[(n - 1) * leb:n * leb]):
    n -= 1
print(min(len(data), n * leb))
PY
  )
  if ((used > 0)); then
    head -c "$used" "$volimg" >"$tmp/vol.img"
    image_line="image=$tmp/vol.img"
  fi
fi
cat >"$tmp/ubi.ini" <<EOF
[$volname]
mode=ubi
vol_id=0
vol_type=dynamic
vol_name=$volname
vol_size=$bytes
$image_line
EOF
ubinize -o "$tmp/ubi.img" -p "$peb" -m 1 -s 1 -O "$vid" -Q 1 "$tmp/ubi.ini" >&2
n=$(stat -c %s "$tmp/ubi.img")
((n <= kib * 1024)) || { echo "mkflash.sh: ubinize wrote $n bytes, more than the flash" >&2; exit 1; }
# The rest of the flash erased.
{ cat "$tmp/ubi.img"; head -c "$((kib * 1024 - n))" /dev/zero | tr '\0' '\377'; } >"$out.tmp"
mv "$out.tmp" "$out"
