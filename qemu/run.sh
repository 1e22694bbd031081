#!/usr/bin/env bash
# Build everything and boot snapinit INTERACTIVELY under QEMU (TCG).
#   qemu/run.sh [--fresh]
# PID 1 is /sbin/snapinit, which replays the chain on the demo flash and execs
# busybox init; press Enter for a root shell on the console, then try
#   snapshot info | echo hi >/etc/hello; snapshot save | snapshot commit
#   snapshot rollback | reboot -f   (reboot -f ends QEMU; quit anytime: Ctrl-A x)
# The demo flash (4 MiB) lives in $SNAPINIT_DEMO_DIR (default
# ~/.cache/snapinit/demo) and keeps its chain across runs; --fresh erases it.
# Works with piped stdin too (e.g. printf '\nsnapshot info\nreboot -f\n' | qemu/run.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fresh=0
case ${1:-} in
  --fresh) fresh=1 ;;
  '') ;;
  -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
esac

demo=${SNAPINIT_DEMO_DIR:-$HOME/.cache/snapinit/demo}
mkdir -p "$demo"
kernel=$("$here/build.sh" "$demo/bin" | tail -n 1)
if ((fresh)) || [[ ! -f $demo/flash.img ]]; then
  "$here/mkflash.sh" "$demo/flash.img" 4096
  echo "run.sh: new erased 4 MiB flash $demo/flash.img" >&2
fi
echo "run.sh: booting; press Enter for a shell, 'reboot -f' or Ctrl-A x to quit" >&2
exec "$here/boot.sh" --interactive --kernel "$kernel" --rootfs "$demo/bin/rootfs.squashfs" \
  --flash "$demo/flash.img" --init /sbin/snapinit
