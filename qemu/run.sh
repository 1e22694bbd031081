#!/usr/bin/env bash
# Build everything and boot snapinit INTERACTIVELY under QEMU (TCG).
#   qemu/run.sh [--fresh]
# PID 1 is /sbin/snapinit, which replays the chain on the demo flash and execs
# busybox init; there is no login: press Enter for a root shell on the console, then try
#   snapshot info | echo hi >/etc/hello; snapshot save | snapshot commit
#   snapshot rollback | snapshot save --trial 1 | reboot
# A reboot (also the one `commit` and `rollback` do) ends QEMU; on a terminal run.sh then
# offers to boot the router again, so the demo goes on across reboots. Quit: answer n, or
# Ctrl-A x at any time (`poweroff` halts the guest but leaves QEMU running: use Ctrl-A x).
# The demo flash (4 MiB) lives in $SNAPINIT_DEMO_DIR (default
# ~/.cache/snapinit/demo) and keeps its chain across runs; --fresh erases it.
# Works with piped stdin too (one boot; e.g. printf '\nsnapshot info\nreboot -f\n' | qemu/run.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fresh=0
case ${1:-} in
  --fresh) fresh=1 ;;
  '') ;;
  -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
esac

demo=${SNAPINIT_DEMO_DIR:-$HOME/.cache/snapinit/demo}
mkdir -p "$demo"
kernel=$("$here/build.sh" "$demo/bin" | tail -n 1)
if ((fresh)) || [[ ! -f $demo/flash.img ]]; then
  "$here/mkflash.sh" "$demo/flash.img" 4096
  echo "run.sh: new erased 4 MiB flash $demo/flash.img" >&2
fi
boot() {
  echo "run.sh: booting; press Enter for a shell (no login); Ctrl-A x quits" >&2
  "$here/boot.sh" --interactive --kernel "$kernel" --rootfs "$demo/bin/rootfs.squashfs" \
    --flash "$demo/flash.img" --init /sbin/snapinit
}
if [[ ! -t 0 ]]; then
  boot
  exit
fi
while boot; do
  read -r -p "run.sh: the router rebooted (or you quit). Boot it again? [Y/n] " again || break
  [[ $again == [nN]* ]] && break
done
