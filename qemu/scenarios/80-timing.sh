# timing: snapinit logs each step (target, chain device, chain summary, each replayed block,
# overlay, switch root, peak RSS, exec) through the kernel's /dev/kmsg rate limit; the log
# is printed with kernel timestamps, and start->exec was measured on this architecture. Then
# the hash throughput of this architecture: a 4 MiB plain snapshot replayed by snapinit and
# checked by `snapshot verify` in the guest (both timed; figures under the table).
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
  # This boot's own measurement (EXECS collects every boot of the run).
  local exec1=$LAST_EXEC_MS step
  for step in 'target /sbin/test-agent' 'chain on /dev/mtd0' 'chain: Chain, 1 snapshot' \
    'restored snapshot 1 from' 'restored the saved changes' 'overlay mounted' \
    'root switched' 'peak RSS' 'exec /sbin/test-agent'; do
    check "boot1: snapinit logged '$step'" has boot1 dmesg_snapinit "snapinit: $step"
  done
  echo "  snapinit log of boot1 (kernel timestamps):"
  get boot1 dmesg_snapinit | sed 's/^/      | /'
  check "boot1: snapinit start->exec measured (${exec1:-?} ms)" test -n "$exec1"
  # Throughput of the hash on this architecture (SHA-256 in software on MIPS and ARM without
  # the crypto extensions): one 4 MiB plain snapshot of one file, so hashing is nearly all
  # of the work. PID 1 hashes while it replays; `snapshot verify` hashes and decodes.
  local g=$SDIR/flash4.img mib=4
  flash_new "$g" 8192
  rm -rf "$SDIR/big" && mkdir -p "$SDIR/big/data"
  head -c $((mib << 20)) /dev/urandom >"$SDIR/big/data/blob"
  "$SNAPSHOT_HOST" --device "$g" format --yes >/dev/null &&
    "$SNAPSHOT_HOST" --device "$g" commit --no-compress --upper "$SDIR/big" --no-reboot >/dev/null ||
    { fail "host snapshot (4 MiB) failed"; return 1; }
  vm boot2 "$g" <<'STEP' || return 1
a=$(up)
snapshot verify >/dev/null
b=$(up)
emit_str verify_s "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b - a}')"
STEP
  local v r
  v=$(get boot2 verify_s)
  r=$(awk 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { t = substr($0, 2, RLENGTH - 2) + 0
      if ($0 ~ /snapinit: chain: /) a = t
      if ($0 ~ /snapinit: restored snapshot 1 /) b = t }
    END { if (a != "" && b != "") printf "%.0f", (b - a) * 1000 }' "$SDIR/boot2.log")
  check "boot2: verify of the 4 MiB snapshot timed (${v:-?} s)" awk -v v="$v" 'BEGIN{exit !(v > 0)}'
  check "boot2: snapinit's replay of it timed (kernel timestamps)" test -n "$r"
  summary "4 MiB plain snapshot: snapinit hash+replay ${r:-?} ms ($(awk -v r="${r:-0}" -v m=$mib 'BEGIN{if (r > 0) printf "%.1f", m * 1000 / r; else printf "?"}') MiB/s), snapshot verify ${v:-?} s ($(awk -v v="${v:-0}" -v m=$mib 'BEGIN{if (v > 0) printf "%.1f", m / v; else printf "?"}') MiB/s), under TCG"
}
