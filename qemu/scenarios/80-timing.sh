# timing: snapinit logs each step (target, chain device, chain summary, each replayed block,
# overlay, switch root, peak RSS, exec) through the kernel's /dev/kmsg rate limit; the log
# is printed with kernel timestamps, and start->exec was measured on this architecture.
scenario_timing() {
  local f=$SDIR/flash.img
  flash_new "$f" 2048
  mkdir -p "$SDIR/up/etc"
  printf 'timing\n' >"$SDIR/up/etc/timing"
  "$SNAPSHOT_HOST" --device "$f" format --yes >/dev/null &&
    "$SNAPSHOT_HOST" --device "$f" commit --upper "$SDIR/up" --no-reboot >/dev/null &&
    "$SNAPSHOT_HOST" --device "$f" save --upper "$SDIR/up" >/dev/null || { fail "host snapshot failed"; return 1; }
  vm boot1 "$f" <<'STEP' || return 1
probe
STEP
  local step
  for step in 'target /sbin/test-agent' 'chain on /dev/mtd0' 'chain: Chain, 1 snapshot' \
    'restored snapshot 1 from' 'restored the saved changes' 'overlay mounted' \
    'root switched' 'peak RSS' 'exec /sbin/test-agent'; do
    check "boot1: snapinit logged '$step'" has boot1 dmesg_snapinit "snapinit: $step"
  done
  echo "  snapinit log of boot1 (kernel timestamps):"
  get boot1 dmesg_snapinit | sed 's/^/      | /'
  check "snapinit start->exec measured on this architecture" \
    eval 'printf "%s\n" "${EXECS[@]}" | grep -q "^$ARCH "'
}
