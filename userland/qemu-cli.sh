#!/usr/bin/env bash
# The snapshot tool on a real MTD partition (block2mtd in QEMU), and snapinit booting what it
# wrote. Uses qemu/build.sh (static snapinit + snapshot, busybox rootfs) and qemu/boot.sh.
#   userland/qemu-cli.sh [--keep]
#   boot 1 (init=test-agent): /proc/mtd lookup, format, commit, save, info --json, verify
#   boot 2 (init=snapinit):   the snapshot and the volatile are live; from inside the booted
#                             system: info, verify, rollback 1 (drops the volatile)
#   boot 3 (init=snapinit):   the volatile is gone, the snapshot stays
# Prints PASS/FAIL lines and "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
keep=0
[[ ${1:-} == --keep ]] && keep=1
work=$(mktemp -d "${TMPDIR:-/tmp}/snapshot-qemu.XXXXXX")
passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
cleanup() { if ((keep || failed)); then echo "qemu-cli: artifacts in $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT

kernel=$("$repo/qemu/build.sh" "$work/build" | tail -n 1)
"$repo/qemu/mkflash.sh" "$work/flash.img" 2048 >/dev/null

cat >"$work/step1.sh" <<'STEP'
set -e
snapshot info
snapshot format
mkdir -p /tmp/up/etc/config
echo from-snapshot-1 > /tmp/up/etc/config/marker
chown 12:34 /tmp/up/etc/config/marker
chmod 600 /tmp/up/etc/config/marker
snapshot commit --upper /tmp/up --no-reboot
mkdir -p /tmp/up2/etc
echo from-the-volatile > /tmp/up2/etc/vol
snapshot save --upper /tmp/up2
snapshot info
snapshot info --json > /tmp/info.json
emit_lines info_json </tmp/info.json
snapshot verify
emit_str cli done
STEP

cat >"$work/step2.sh" <<'STEP'
set -e
emit_str marker "$(cat /etc/config/marker)"
emit_str marker_meta "$(stat -c '%a %u:%g' /etc/config/marker)"
emit_str vol "$(cat /etc/vol)"
snapshot info
snapshot verify
snapshot rollback 1 --yes --no-reboot
snapshot info --json > /tmp/info.json
emit_lines info_json </tmp/info.json
emit_str cli done
STEP

cat >"$work/step3.sh" <<'STEP'
emit_str marker "$(cat /etc/config/marker)"
if [ -e /etc/vol ]; then emit_str vol present; else emit_str vol gone; fi
snapshot verify && emit_str verify ok
STEP

root="$work/build/rootfs.squashfs"
get() { "$repo/qemu/result-get.sh" "$work/$1.jsonl" "$2"; }
boot() { # NAME STEP INIT-ARGS...
  local name=$1 step=$2
  shift 2
  if "$repo/qemu/boot.sh" --kernel "$kernel" --rootfs "$root" --flash "$work/flash.img" \
    --log "$work/$name.log" --result "$work/$name.jsonl" --timeout 120 \
    --script "$step" "$@" | tail -n 1; then pass "$name booted"; else fail "$name booted"; fi
}
check() { # DESCRIPTION BOOT KEY EXPECTED
  local got
  got=$(get "$2" "$3" 2>/dev/null || true)
  if [[ $got == "$4" ]]; then pass "$1"; else fail "$1: got '$got', want '$4'"; fi
}
json_has() { # DESCRIPTION BOOT PATTERN
  if get "$2" info_json 2>/dev/null | tr -d ' \n' | grep -q "$3"; then pass "$1"; else fail "$1"; fi
}

boot boot1 "$work/step1.sh" --init /sbin/test-agent
check "boot1: CLI steps on /dev/mtd0 ran" boot1 status 0
check "boot1: reached the end" boot1 cli done
json_has "boot1: info --json names the MTD device" boot1 '"device":"/dev/mtd0","device_kind":"mtd"'
json_has "boot1: one snapshot" boot1 '"snapshots":\[{"index":1'
json_has "boot1: a volatile" boot1 '"volatile":{"index":null,"type":"volatile"'
get boot1 output | sed 's/^/  boot1| /'

boot boot2 "$work/step2.sh" --init /sbin/snapinit --append snapinit.init=/sbin/test-agent
check "boot2: snapshot content live" boot2 marker from-snapshot-1
check "boot2: mode and owner replayed" boot2 marker_meta "600 12:34"
check "boot2: volatile content live" boot2 vol from-the-volatile
check "boot2: info/verify/rollback on the running system" boot2 status 0
json_has "boot2: volatile dropped" boot2 '"volatile":null'
get boot2 output | sed 's/^/  boot2| /'

boot boot3 "$work/step3.sh" --init /sbin/snapinit --append snapinit.init=/sbin/test-agent
check "boot3: snapshot stays" boot3 marker from-snapshot-1
check "boot3: volatile gone after rollback" boot3 vol gone
check "boot3: verify" boot3 verify ok

echo "$passed passed, $failed failed"
((failed == 0))
