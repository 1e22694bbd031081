#!/usr/bin/env bash
# Boot one QEMU (TCG) VM non-interactively.
#   qemu/boot.sh --rootfs ROOT.squashfs [options]
# Options:
#   --arch ARCH          x86_64 (default), mipsel, mips, arm, aarch64: the QEMU binary,
#                        board, console and virtio transport come from qemu/arch.sh;
#                        everything else is the same on every architecture
#   --kernel IMAGE       kernel (default: output of qemu/build-kernel.sh ARCH, cached)
#   --rootfs FILE        squashfs root -> /dev/vda (read-only), root=/dev/vda
#   --flash FILE         raw flash image -> /dev/vdb (writable, cache=writethrough),
#                        exposed as MTD "rootfs_data" via block2mtd
#   --erase-size BYTES   block2mtd erase size (default 65536)
#   --mtd-name NAME      MTD partition name (default rootfs_data; "ubi" with --medium ubi)
#   --medium M           nor (default): the flash is the MTD partition rootfs_data;
#                        ubi: the flash's MTD ("ubi") is attached by UBI at boot
#                        (ubi.mtd=), /dev/ubi0, the volume rootfs_data /dev/ubi0_0
#                        (qemu/mkflash.sh --ubi); nandsim: no flash disk, a RAM-only
#                        raw NAND (nandsim: 64 MiB, 2 KiB pages, 128 KiB blocks) attached
#                        by UBI (formatted on attach when empty; no volume)
#   --script FILE        agent step script -> next virtio disk (read-only), see README
#   --init PATH          init= (default /sbin/init)
#   --append "ARGS"      extra kernel command line (repeatable: they add up)
#   --log FILE           serial console log (default: a temp file, shown on failure)
#   --result FILE        host side of the virtio-serial port "result" (default: temp)
#   --timeout SECONDS    kill QEMU and fail if still running (default 60)
#   --kill-after SECONDS SIGKILL QEMU after SECONDS (simulated power cut)
#   --kill-on KEY        SIGKILL QEMU once the guest wrote result KEY (a power cut timed
#                        by the guest), --kill-delay SECONDS after it (default 0);
#                        repeatable, each --kill-delay belongs to the --kill-on before it
#                        (the guest picks its operation, each key gets its own delay)
#   --mem SIZE           guest RAM (default 128M)
#   --net user           a virtio NIC (eth0 in the guest) on QEMU user networking: the guest
#                        takes 10.0.2.15/24 itself and reaches the host's loopback at 10.0.2.2
#                        (default: no NIC)
#   --qemu-arg ARG       extra raw QEMU argument (repeatable)
#   --interactive        serial console on stdio, no timeout (for humans)
#   --dry-run            print the QEMU command line and exit
# Last stdout line: "boot: result=<exited|killed|timeout|panic|error> rc=N wall=S.SS"
# Exit status: 0 exited (guest reboot) or killed by --kill-after as asked;
#              124 timeout; 4 kernel panic seen in the log; else QEMU's status.
set -euo pipefail

usage() {
  sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kernel='' rootfs='' flash='' script='' init=/sbin/init append='' log='' result=''
timeout_s=60 kill_after='' kill_on='' mem=128M interactive=0 dry_run=0
erase_size=65536 mtd_name='' medium=nor arch=x86_64 net=''
extra=() kill_keys=() kill_delays=()
while (($#)); do
  case $1 in
    --arch) arch=${2:?}; shift 2 ;;
    --kernel) kernel=${2:?}; shift 2 ;;
    --rootfs) rootfs=${2:?}; shift 2 ;;
    --flash) flash=${2:?}; shift 2 ;;
    --erase-size) erase_size=${2:?}; shift 2 ;;
    --mtd-name) mtd_name=${2:?}; shift 2 ;;
    --medium) medium=${2:?}; shift 2 ;;
    --script) script=${2:?}; shift 2 ;;
    --init) init=${2:?}; shift 2 ;;
    --append) append+="${append:+ }${2?}"; shift 2 ;;
    --log) log=${2:?}; shift 2 ;;
    --result) result=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --kill-after) kill_after=${2:?}; shift 2 ;;
    --kill-on) kill_keys+=("${2:?}"); kill_delays+=(0); kill_on+="${kill_on:+ }$2"; shift 2 ;;
    --kill-delay)
      ((${#kill_keys[@]})) || { echo "boot.sh: --kill-delay before any --kill-on" >&2; exit 2; }
      kill_delays[${#kill_keys[@]} - 1]=${2:?}
      shift 2
      ;;
    --mem) mem=${2:?}; shift 2 ;;
    --net) net=${2:?}; shift 2 ;;
    --qemu-arg) extra+=("${2?}"); shift 2 ;;
    --interactive) interactive=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage ;;
    *) echo "boot.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $rootfs ]] || { echo "boot.sh: --rootfs is required" >&2; usage; }
[[ -z $net || $net == user ]] || { echo "boot.sh: --net takes only 'user'" >&2; exit 2; }
case $medium in
  nor) mtd_name=${mtd_name:-rootfs_data} ;;
  # A name other than rootfs_data: in UBI mode the only rootfs_data is the UBI volume.
  ubi) mtd_name=${mtd_name:-ubi} ;;
  nandsim)
    [[ -z $flash ]] || { echo "boot.sh: --medium nandsim has no flash disk (RAM only)" >&2; exit 2; }
    ;;
  *) echo "boot.sh: unknown medium '$medium' (nor, ubi, nandsim)" >&2; exit 2 ;;
esac

. "$here/arch.sh"
arch_load "$arch" || exit 2
"$here/deps.sh"
"$here/$A_DEPS"
machine=("$A_QEMU" -machine "$A_MACHINE" -accel tcg)
[[ -z $A_CPU ]] || machine+=(-cpu "$A_CPU")
if [[ -z $kernel ]]; then
  kernel=$("$here/build-kernel.sh" "$arch" | tail -n 1)
fi
for f in "$kernel" "$rootfs" ${flash:+"$flash"} ${script:+"$script"}; do
  [[ -f $f ]] || { echo "boot.sh: no such file: $f" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-boot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
[[ -n $log ]] || log=$tmp/console.log
[[ -n $result ]] || result=$tmp/result.jsonl
: >"$result"
: >"$log"

cmdline="console=$A_CONSOLE root=/dev/vda rootfstype=squashfs ro init=$init"
cmdline+=" panic=-1"
[[ -z $A_APPEND ]] || cmdline+=" $A_APPEND"

# Disk order == creation order == PCI slot order == vda, vdb, vdc.
ndisk=0
disk() { # DRIVE_OPTIONS
  qemu+=(-drive "$1,if=none,id=disk$ndisk" -device "virtio-blk-$A_VIRTIO,drive=disk$ndisk")
  ndisk=$((ndisk + 1))
}
qemu=("${machine[@]}" -m "$mem" -no-reboot -nodefaults -no-user-config -kernel "$kernel")
disk "file=$rootfs,format=raw,readonly=on"
if [[ -n $flash ]]; then
  disk "file=$flash,format=raw,cache=writethrough"
  cmdline+=" block2mtd.block2mtd=/dev/vdb,$erase_size,$mtd_name"
fi
# UBI (a late_initcall, linked after block2mtd's) attaches the MTD by name. nandsim, where
# the kernel has it, is built in and probes at every boot: its default chip (a 128 MiB
# small-page NAND) would be mtd0 ahead of block2mtd's. Every other medium gives it an ID
# no chip has, so it finds nothing and registers no MTD ("No NAND device found").
case $medium in
  # ST Micro 0xa2: 64 MiB, 1.8 V, 8-bit; 4th ID byte 0x15 = 2 KiB page, 64 B OOB,
  # 128 KiB block. nandsim is mtd0 (device initcall; block2mtd is late). Its sub-page
  # writes are 512 bytes: VID header at 512, data at 2048, LEB = 126 KiB.
  nandsim) cmdline+=" nandsim.id_bytes=0x20,0xa2,0x00,0x15 ubi.mtd=0" ;;
  ubi) cmdline+=" nandsim.id_bytes=0xff,0xff ubi.mtd=$mtd_name" ;;
  *) cmdline+=" nandsim.id_bytes=0xff,0xff" ;;
esac
if [[ -n $script ]]; then
  # A raw disk: marker line, name line, the script, zero padding to 4 KiB.
  sdisk=$tmp/script.img
  {
    echo "# snapinit-agent-script v1"
    echo "# name: $(basename "$script")"
    cat "$script"
  } >"$sdisk"
  truncate -s "%4096" "$sdisk"
  disk "file=$sdisk,format=raw,readonly=on"
fi
qemu+=(-device "virtio-serial-$A_VIRTIO"
  -chardev "file,id=res,path=$result"
  -device 'virtserialport,chardev=res,name=result')
if [[ -n $net ]]; then
  # After the disks: their PCI slots (vda, vdb, vdc) stay as they are. No option ROM (PXE).
  nic=virtio-net-$A_VIRTIO,netdev=net0
  [[ $A_VIRTIO != pci ]] || nic+=,romfile=
  qemu+=(-netdev user,id=net0,ipv6=off -device "$nic")
fi
[[ -z $append ]] || cmdline+=" $append"
# The board's watchdog (inactive until something opens it: snapinit does for a trial boot).
# shellcheck disable=SC2206
[[ -z $A_WATCHDOG ]] || qemu+=($A_WATCHDOG)

if ((interactive)); then
  # -nodefaults dropped the default serial: put it (muxed with the monitor) on stdio.
  qemu+=(-nographic -serial mon:stdio -append "$cmdline" "${extra[@]}")
  ((dry_run)) && { printf '%q ' "${qemu[@]}"; echo; exit 0; }
  echo "boot.sh: interactive; quit with Ctrl-A x" >&2
  exec "${qemu[@]}"
fi

qemu+=(-display none -serial "file:$log" -monitor none -append "$cmdline" "${extra[@]}")
if ((dry_run)); then
  printf '%q ' "${qemu[@]}"
  echo
  exit 0
fi

limit=$timeout_s
if [[ -n $kill_after ]]; then
  limit=$kill_after
fi

# QEMU in the background; this loop is the timer (--timeout, --kill-after) and, with
# --kill-on, watches the result file for the guest's KEY.
start=$(date +%s.%N)
t_end=$((${EPOCHREALTIME/./} + $(awk -v l="$limit" 'BEGIN{printf "%d", l * 1000000}')))
poll=0.1
[[ -z $kill_on ]] || poll=0.02
"${qemu[@]}" </dev/null &
qpid=$!
trap 'kill -KILL $qpid 2>/dev/null || true; rm -rf "$tmp"' EXIT
why=''
while kill -0 "$qpid" 2>/dev/null; do
  for i in "${!kill_keys[@]}"; do
    if grep -q "\"key\":\"${kill_keys[i]}\"" "$result" 2>/dev/null; then
      sleep "${kill_delays[i]}"
      why=cut
      break
    fi
  done
  if [[ -n $why ]]; then
    :
  elif ((${EPOCHREALTIME/./} >= t_end)); then
    why=limit
  fi
  if [[ -n $why ]]; then
    kill -KILL "$qpid" 2>/dev/null || why=''
    break
  fi
  sleep "$poll"
done
rc=0
wait "$qpid" || rc=$?
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}')

status=0
if [[ $why == cut ]] || [[ $why == limit && -n $kill_after ]]; then
  state=killed
elif [[ $why == limit ]]; then
  state=timeout status=124
elif ((rc != 0)); then
  state=error status=$rc
elif grep -q 'Kernel panic' "$log"; then
  state=panic status=4
else
  state=exited
fi
if [[ -n $kill_on && $state == timeout ]]; then
  echo "boot.sh: the guest never wrote $kill_on" >&2
fi
if [[ -n $kill_after$kill_on && $state == exited ]]; then
  echo "boot.sh: note: guest exited before the kill" >&2
fi
if ((status != 0)); then
  echo "boot.sh: FAIL ($state); last console lines ($log):" >&2
  tail -n 25 "$log" | sed 's/^/  | /' >&2
fi
echo "boot: result=$state rc=$rc wall=$wall"
exit "$status"
