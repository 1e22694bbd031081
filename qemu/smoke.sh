#!/usr/bin/env bash
# End-to-end proof of the QEMU test infrastructure (busybox only).
#   qemu/smoke.sh [--snapinit PATH] [--snapshot PATH] [--keep]
# Builds the kernel (cached) and a busybox rootfs with the test agent, makes a
# 2 MiB erased flash image, then:
#   boot 1 (init=/sbin/test-agent): checks /proc/mtd names rootfs_data, writes
#          a marker to /dev/mtdblock0;
#   boot 2 (init=/sbin/test-agent): reads the marker back from /dev/mtd0;
#   boot 3 (busybox init, agent via rcS): plain busybox init boots;
#   boot 4 (--kill-after 1): QEMU is SIGKILLed (power-cut simulation).
#   boot 5 (only with --snapinit): init=/sbin/snapinit snapinit.init=/sbin/test-agent
#          on a fresh erased flash: the agent must run on an overlay root.
# --snapshot is only installed into the image (not exercised).
# Prints PASS/FAIL lines, per-boot wall time, and "N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mk_args=()
keep=0
with_snapinit=0
while (($#)); do
  case $1 in
    --snapinit) mk_args+=("$1" "${2:?}"); with_snapinit=1; shift 2 ;;
    --snapshot) mk_args+=("$1" "${2:?}"); shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: smoke.sh [--snapinit PATH] [--snapshot PATH] [--keep]" >&2; exit 2 ;;
  esac
done

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
  local d=$1
  shift
  if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-smoke.XXXXXX")
cleanup() {
  if ((keep || failed)); then
    echo "smoke: artifacts kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

"$here/deps.sh"

t0=$(date +%s)
kernel=$("$here/build-kernel.sh" x86_64 | tail -n 1)
echo "smoke: kernel $kernel (build-kernel.sh took $(($(date +%s) - t0)) s)"

"$here/mkrootfs.sh" "$work/rootfs.squashfs" --agent "$here/agent.sh" "${mk_args[@]}"
check "rootfs built" test -s "$work/rootfs.squashfs"
"$here/mkflash.sh" "$work/flash.img" 2048

marker="snapinit-smoke-$$-$(date +%s)"

cat >"$work/step1.sh" <<STEP
set -e
grep rootfs_data /proc/mtd
test "\$(cat /sys/class/mtd/mtd0/name)" = rootfs_data
printf '%s\n' "$marker" | dd of=/dev/mtdblock0 bs=512 conv=sync 2>/dev/null
sync
emit_str marker_written "$marker"
STEP

cat >"$work/step2.sh" <<'STEP'
set -e
m=$(dd if=/dev/mtd0 bs=512 count=1 2>/dev/null | tr -d '\000' | head -n 1)
echo "read back: $m"
emit_str marker_read "$m"
emit_str result_port "$RESULT_PORT"
STEP

boot() { # boot NAME ARGS... ; sets boot_line
  local name=$1
  shift
  local out
  if out=$("$here/boot.sh" --kernel "$kernel" --rootfs "$work/rootfs.squashfs" \
    --flash "$work/flash.img" --log "$work/$name.log" --result "$work/$name.jsonl" \
    --timeout 60 "$@"); then
    boot_line=$(tail -n 1 <<<"$out")
    pass "$name: $boot_line"
  else
    boot_line=$(tail -n 1 <<<"$out")
    fail "$name: $boot_line"
  fi
  echo "smoke: $name wall time ${boot_line##*wall=} s"
}
get() { "$here/result-get.sh" "$work/$1.jsonl" "$2"; }
is() { [[ $(get "$1" "$2") == "$3" ]]; }

# --- boot 1: write the marker -------------------------------------------------
boot boot1 --init /sbin/test-agent --script "$work/step1.sh"
check "boot1: result file is valid JSON lines" get boot1 ""
check "boot1: agent finished (done=true)" is boot1 "done" true
check "boot1: step exit status 0" is boot1 status 0
check "boot1: /proc/mtd names rootfs_data" grep -q '"rootfs_data"' <(get boot1 mtd)
check "boot1: root is the squashfs" grep -q '^[0-9]* [0-9]* [0-9:]* / / .* - squashfs ' <(get boot1 mounts)
check "boot1: marker written" is boot1 marker_written "$marker"
check "host: marker persisted in flash image" grep -q "$marker" <(head -c 512 "$work/flash.img")

# --- boot 2: read it back -------------------------------------------------------
boot boot2 --init /sbin/test-agent --script "$work/step2.sh"
check "boot2: step exit status 0" is boot2 status 0
check "boot2: marker survived reboot" is boot2 marker_read "$marker"
check "boot2: done=true" is boot2 "done" true
if port=$(get boot2 result_port 2>/dev/null); then
  echo "smoke: guest result port is $port"
fi

# --- boot 3: stock busybox init, agent started from rcS -------------------------
boot boot3 --init /sbin/init --append agent.run=1
check "boot3: busybox init + rcS ran the agent (done=true)" is boot3 "done" true
check "boot3: rcS ran" grep -q 'rcS: up' "$work/boot3.log"

# --- boot 4: power cut ------------------------------------------------------------
boot boot4 --init /sbin/test-agent --script "$work/step2.sh" --kill-after 1
check "boot4: --kill-after SIGKILLed QEMU" grep -q 'result=killed' <<<"$boot_line"

# --- boot 5: snapinit as PID 1 execs the agent -------------------------------------
if ((with_snapinit)); then
  "$here/mkflash.sh" "$work/flash.img" 2048
  boot boot5 --init /sbin/snapinit --append snapinit.init=/sbin/test-agent
  check "boot5: snapinit exec'd the agent (done=true)" is boot5 "done" true
  check "boot5: root is an overlay" grep -q '^[0-9]* [0-9]* [0-9:]* / / .* - overlay ' <(get boot5 mounts)
  check "boot5: dmesg has snapinit: lines" grep -q 'snapinit:' <(get boot5 dmesg_snapinit)
fi

echo "$passed passed, $failed failed"
((failed == 0))
