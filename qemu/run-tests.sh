#!/usr/bin/env bash
# snapinit QEMU boot tests: every scenario, one pass/fail table.
#   qemu/run-tests.sh [--keep] [--only N[,N...]] [--cuts N]
# Builds the kernel (cached), PID 1, a static `snapshot` and the rootfs
# (qemu/build.sh), then boots each scenario under QEMU (TCG) with
# init=/sbin/snapinit snapinit.init=/sbin/test-agent; the guest acts through a
# step script and the checks read the agent's JSON result file (and the flash
# image on the host). Scenarios:
#   1 blank     erased flash: plain tmpfs overlay; `snapshot format`; empty chain
#   2 config    /etc edits + a deleted /rom file survive `snapshot save` + reboot
#   3 commit    `snapshot commit --no-reboot`: the change moves to /snapshot
#   4 rollback  two commits, `rollback 1`: the state of the first comes back
#   5 powercut  QEMU SIGKILLed at several points of a multi-MiB save: each next
#               boot shows exactly the old or the new state; later saves work
#   6 corrupt   a byte flipped in the middle snapshot's payload (host side):
#               the prefix before it boots, the log names the rejected block
#   7 timing    snapinit's per-step log; boot-to-exec time and wall per boot
# --keep keeps every artifact (default: only those of failed scenarios).
# --only runs a subset, --cuts sets the planned power cuts (default 6, min 4).
# Exit status: 0 all passed, 1 any failure (or a boot that could not happen).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
keep=0 only='' cuts=6
while (($#)); do
  case $1 in
    --keep) keep=1; shift ;;
    --only) only=,${2:?},; shift 2 ;;
    --cuts) cuts=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-tests.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((cuts >= 4)) || { echo "run-tests.sh: --cuts must be at least 4" >&2; exit 2; }

T_START=$(date +%s.%N)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-tests.XXXXXX")
echo "run-tests: work dir $work"

# --- build -----------------------------------------------------------------------
"$here/deps.sh"
if ! kernel=$("$here/build.sh" "$work/bin" | tail -n 1); then
  echo "run-tests: FAIL: build failed (see above); nothing was booted" >&2
  exit 1
fi
rootfs=$work/bin/rootfs.squashfs
snapshot_host=$work/bin/snapshot
echo "run-tests: build times (s): $(tr '\n' ' ' <"$work/bin/build-times")"

# --- framework ---------------------------------------------------------------------
# A scenario is a function; it returns non-zero (or calls fail) to fail. Its
# boots and checks log to $sdir; boots/walls/snapinit timings are collected.
names=() results=() times=() failed_logs=()
walls=()          # "scenario/tag wall" of every boot that ran to its end
exec_ms=()        # snapinit first->exec line, ms, per snapinit boot
cur='' sdir='' cur_fail=0

fail() { echo "  FAIL [$cur]: $*"; cur_fail=1; }
note() { echo "  [$cur] $*"; }
check() { # check DESCRIPTION COMMAND... : pass silently, fail loudly
  local d=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "  ok   [$cur] $d"
  else
    fail "$d"
  fi
}
get() { "$here/result-get.sh" "$sdir/$1.jsonl" "$2" 2>/dev/null; }
is() { [[ $(get "$1" "$2") == "$3" ]]; }
# (no grep -q: with pipefail, an early exit would SIGPIPE the reader and fail)
has() { get "$1" "$2" | grep -E -- "$3" >/dev/null; }   # has TAG KEY ERE
empty() { [[ -z $(get "$1" "$2") ]]; }

# The guest library put in front of every step script (busybox sh).
guest_lib() {
  cat <<'LIB'
# --- run-tests guest library ---
dirhash() { # DIR -> sha256 over the sorted listing (with modes) and contents; "absent"
	[ -d "$1" ] || { echo absent; return 0; }
	( cd "$1" && { find . | sort | while read -r p; do stat -c '%A %N' "$p"; done
		find . -type f | sort | xargs -r sha256sum; } | sha256sum | cut -d' ' -f1 )
}
probe() { # the state this boot came up with
	( cd /overlay/upper && find . -mindepth 1 | sort ) >/tmp/p.up 2>&1
	emit_lines upper_list </tmp/p.up
	( cd /snapshot && find . -mindepth 1 | sort ) >/tmp/p.sn 2>&1
	emit_lines snapshot_list </tmp/p.sn
	emit_str etc_hash "$(dirhash /etc)"
	snapshot info >/tmp/p.info 2>&1 || echo "snapshot info: exit $?" >>/tmp/p.info
	emit_lines info_boot </tmp/p.info
}
up() { cut -d' ' -f1 /proc/uptime; }
set -e
# --- step ---
LIB
}

# vm TAG FLASH [boot.sh args...] <<'STEP' ... STEP
# No printk.devkmsg=on: the kernel's default /dev/kmsg rate limit stays, so
# scenario 7 proves every snapinit line still reaches the log (fcc9350).
# Boots snapinit (target: the agent) with the step script from stdin. Fails the
# scenario unless QEMU ran to the guest's reboot (or to --kill-after), the
# agent finished and the step exited 0 (a killed boot is only checked for the kill).
vm() {
  local tag=$1 flash=$2
  shift 2
  local killed=0 a out rc=0 line wall
  for a in "$@"; do [[ $a != --kill-after ]] || killed=1; done
  { guest_lib; cat; } >"$sdir/$tag.sh"
  out=$("$here/boot.sh" --kernel "$kernel" --rootfs "$rootfs" --flash "$flash" \
    --init /sbin/snapinit --script "$sdir/$tag.sh" --log "$sdir/$tag.log" \
    --result "$sdir/$tag.jsonl" --timeout 120 \
    --append "snapinit.init=/sbin/test-agent" "$@" 2>"$sdir/$tag.boot.err") || rc=$?
  line=$(tail -n 1 <<<"$out")
  wall=${line##*wall=}
  last_wall=$wall
  if ((rc != 0)); then
    fail "$tag: boot failed: ${line:-no boot line} (console: $sdir/$tag.log)"
    sed 's/^/      /' "$sdir/$tag.boot.err" | tail -n 30
    return 1
  fi
  if ((killed)); then
    if [[ $line != *result=killed* ]]; then
      note "$tag: guest finished before the kill ($line)"
    fi
    return 0
  fi
  walls+=("$cur/$tag $wall")
  record_exec_time "$tag"
  if ! is "$tag" done true; then
    fail "$tag: agent did not finish (no done=true; console: $sdir/$tag.log)"
    tail -n 20 "$sdir/$tag.log" | sed 's/^/      | /'
    return 1
  fi
  if ! is "$tag" status 0; then
    fail "$tag: step script exited $(get "$tag" status); its output:"
    get "$tag" output | tail -n 20 | sed 's/^/      | /'
    return 1
  fi
  echo "  boot [$cur] $tag: wall ${wall}s, snapinit start->exec ${last_exec_ms:-?} ms"
}

# snapinit's own time: first `snapinit:` kernel timestamp to its `exec` line.
record_exec_time() {
  last_exec_ms=$(get "$1" dmesg_snapinit | awk '
    match($0, /^\[ *[0-9]+\.[0-9]+\]/) {
      t = substr($0, 2, RLENGTH - 2) + 0
      if (first == "") first = t
      if ($0 ~ /snapinit: exec /) last = t
    }
    END { if (first != "" && last != "") printf "%.1f", (last - first) * 1000 }')
  [[ -z $last_exec_ms ]] || exec_ms+=("$last_exec_ms")
}

run_scenario() { # run_scenario N NAME FUNCTION
  local n=$1 name=$2 fn=$3 t0 t1
  if [[ -n $only && $only != *,$n,* ]]; then return 0; fi
  cur="$n-$name"
  sdir=$work/$cur
  mkdir -p "$sdir"
  cur_fail=0
  echo "=== scenario $cur"
  t0=$(now)
  "$fn" || cur_fail=1
  t1=$(now)
  names+=("$cur")
  times+=("$(secs "$t0" "$t1")")
  if ((cur_fail)); then
    results+=(FAIL)
    local f
    for f in "$sdir"/*.log; do [[ -e $f ]] && failed_logs+=("$f"); done
  else
    results+=(PASS)
  fi
}

flash_new() { "$here/mkflash.sh" "$1" "${2:-2048}"; }

# --- 1: blank flash ----------------------------------------------------------------
s_blank() {
  flash_new "$sdir/flash.img" 2048
  vm boot1 "$sdir/flash.img" <<'STEP' || return 1
probe
snapshot format --yes
snapshot info >/tmp/i 2>&1
emit_lines info_after </tmp/i
STEP
  check "boot1: root is an overlay" has boot1 mounts ' / / .* - overlay '
  check "boot1: snapinit saw the empty chain" has boot1 dmesg_snapinit 'snapinit: chain: Empty'
  check "boot1: snapinit says: plain tmpfs overlay" has boot1 dmesg_snapinit 'plain tmpfs overlay'
  check "boot1: snapinit exec'd the agent" has boot1 dmesg_snapinit 'snapinit: exec /sbin/test-agent'
  check "boot1: upper and snapshot layers empty" eval 'empty boot1 upper_list && empty boot1 snapshot_list'
  check "boot1: snapshot format left a valid (empty) chain" has boot1 info_after '^status: +(empty|chain)'
  vm boot2 "$sdir/flash.img" <<'STEP' || return 1
probe
STEP
  check "boot2: boots on the empty chain (chain read, nothing replayed)" \
    has boot2 dmesg_snapinit 'snapinit: chain: (Empty|Chain), 0 snapshot'
  check "boot2: root is an overlay" has boot2 mounts ' / / .* - overlay '
  check "boot2: snapshot info: empty chain" has boot2 info_boot '^status: +(empty|chain: 0 snapshot)'
}

# --- 2: config persistence ------------------------------------------------------------
s_config() {
  flash_new "$sdir/flash.img" 2048
  vm boot1 "$sdir/flash.img" <<'STEP' || return 1
probe
snapshot format --yes
printf 'config system\n\toption hostname changed-by-test\n' >/etc/config/system
mkdir -p /etc/newdir
printf 'new file\n' >/etc/newdir/newfile
ln -s ../hostname /etc/config/hostlink
emit_str want_etc "$(dirhash /etc)"
snapshot save
STEP
  vm boot2 "$sdir/flash.img" <<'STEP' || return 1
probe
grep -q changed-by-test /etc/config/system
rm /etc/rom-marker
emit_str want_etc "$(dirhash /etc)"
snapshot save
STEP
  check "boot2: /etc is as saved (tree hash)" is boot2 etc_hash "$(get boot1 want_etc)"
  check "boot2: /overlay/upper holds the changed file" has boot2 upper_list '^\./etc/config/system$'
  check "boot2: /overlay/upper holds the new file" has boot2 upper_list '^\./etc/newdir/newfile$'
  check "boot2: /overlay/upper holds the symlink" has boot2 upper_list '^\./etc/config/hostlink$'
  check "boot2: /snapshot is empty" empty boot2 snapshot_list
  check "boot2: snapinit replayed the volatile" has boot2 dmesg_snapinit 'volatile block .* replayed'
  vm boot3 "$sdir/flash.img" <<'STEP' || return 1
probe
test ! -e /etc/rom-marker
test -e /rom/etc/rom-marker
grep -q changed-by-test /etc/config/system
STEP
  check "boot3: /etc is as saved after the delete (tree hash)" is boot3 etc_hash "$(get boot2 want_etc)"
  check "boot3: /etc/rom-marker stays deleted (whiteout in upper)" has boot3 upper_list '^\./etc/rom-marker$'
  check "boot3: /snapshot is empty" empty boot3 snapshot_list
}

# --- 3: commit -------------------------------------------------------------------------
s_commit() {
  flash_new "$sdir/flash.img" 2048
  vm boot1 "$sdir/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'committed\n' >/etc/committed-file
printf 'config system\n\toption hostname committed\n' >/etc/config/system
rm /etc/banner
emit_str want_etc "$(dirhash /etc)"
snapshot commit --no-reboot
STEP
  vm boot2 "$sdir/flash.img" <<'STEP' || return 1
probe
STEP
  check "boot2: /etc is as committed (tree hash)" is boot2 etc_hash "$(get boot1 want_etc)"
  check "boot2: the change lives in /snapshot" has boot2 snapshot_list '^\./etc/committed-file$'
  check "boot2: the deletion lives in /snapshot" has boot2 snapshot_list '^\./etc/banner$'
  check "boot2: /overlay/upper is empty" empty boot2 upper_list
  check "boot2: snapinit replayed snapshot 1" has boot2 dmesg_snapinit 'snapshot block seq 1 .* replayed'
  check "boot2: snapshot info lists 1 snapshot" has boot2 info_boot '1 snapshot'
}

# --- 4: rollback -----------------------------------------------------------------------
s_rollback() {
  flash_new "$sdir/flash.img" 2048
  vm boot1 "$sdir/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'first\n' >/etc/state
printf 'only in the first\n' >/etc/first-only
snapshot commit --no-reboot
STEP
  vm boot2 "$sdir/flash.img" <<'STEP' || return 1
probe
printf 'second\n' >/etc/state
rm /etc/first-only
printf 'x\n' >/etc/second-only
snapshot commit --no-reboot
STEP
  vm boot3 "$sdir/flash.img" <<'STEP' || return 1
probe
grep -qx second /etc/state
printf 'volatile after the second\n' >/etc/volatile-file
snapshot save
snapshot rollback 1 --yes --no-reboot
STEP
  check "boot3: two snapshots before the rollback" has boot3 info_boot '2 snapshot'
  vm boot4 "$sdir/flash.img" <<'STEP' || return 1
probe
grep -qx first /etc/state
test -e /etc/first-only
test ! -e /etc/second-only
test ! -e /etc/volatile-file
STEP
  check "boot4: /etc equals the first snapshot's state (tree hash)" \
    is boot4 etc_hash "$(get boot2 etc_hash)"
  check "boot4: one snapshot replayed" has boot4 dmesg_snapinit 'chain: Chain, 1 snapshot'
  check "boot4: /overlay/upper is empty (volatile dropped)" empty boot4 upper_list
}

# --- 5: power cut during a large save -----------------------------------------------------
# Every cut boot: report the state it booted with (hash of /data), write new
# incompressible data, report its hash, then `snapshot save --no-compress`;
# QEMU is SIGKILLed somewhere in there. The next boot must show the old or the
# new hash, nothing else.
pc_mib=6
pc_step() {
  cat <<STEP
emit_str cur_hash "\$(dirhash /data)"
rm -rf /data
mkdir /data
i=1
while [ \$i -le $pc_mib ]; do
	dd if=/dev/urandom of=/data/f\$i bs=65536 count=16 2>/dev/null
	i=\$((i + 1))
done
emit_str new_hash "\$(dirhash /data)"
emit_str save_start "\$(up)"
snapshot save --no-compress
emit_str save_done "\$(up)"
# Idle after the save, so a kill can land once it has returned: the new state must survive.
sleep 6
STEP
}
# One power cut: boot the cut save, SIGKILL QEMU after $1 seconds, boot again and compare
# /data with the states before and after the save. Updates the counters and the save
# window (s_start, s_done) that s_powercut aims with.
pc_cut() {
  local d=$1 tag start done_ new h what
  n=$((n + 1))
  tag=cut$n
  vm "$tag" "$f" --mem 256M --kill-after "$d" < <(pc_step) || return 1
  start=$(get "$tag" save_start || true) done_=$(get "$tag" save_done || true)
  new=$(get "$tag" new_hash || true)
  # Later boots replay /data (two volatile copies) and start the save later
  # than the calibration boot did: aim the next cuts at the observed start.
  if [[ -n $start ]]; then
    s_done=$(awk -v a="$s_start" -v b="$s_done" -v s="$start" 'BEGIN{printf "%.2f", s + b - a}')
    s_start=$start
  fi
  if [[ -z $start ]]; then
    what="before the save started"; early=$((early + 1))
    offset=$(awk -v o="$offset" 'BEGIN{printf "%.2f", o + 0.4}')
  elif [[ -z $done_ ]]; then
    what="during the save (started at ${start}s)"; mid=$((mid + 1))
  else
    what="after the save returned"; late=$((late + 1))
  fi
  note "$tag: QEMU SIGKILLed at ${d}s: $what"
  # The next boot shows what survived.
  vm "$tag-check" "$f" --mem 256M <<'STEP' || return 1
emit_str cur_hash "$(dirhash /data)"
STEP
  h=$(get "$tag-check" cur_hash)
  if [[ -n $done_ && $h != "$new" ]]; then
    fail "$tag: the save returned before the cut, but /data hash $h is not its $new"
  elif [[ $h == "$old" ]]; then
    echo "  ok   [$cur] $tag: booted the old state"; ok=$((ok + 1))
  elif [[ -n $new && $h == "$new" ]]; then
    echo "  ok   [$cur] $tag: booted the new state"; ok=$((ok + 1))
  else
    fail "$tag: booted /data hash $h: neither old $old nor new ${new:-<not reported>}"
  fi
  old=$h
}

s_powercut() {
  local f=$sdir/flash.img old h k n=0 ok=0 mid=0 early=0 late=0
  flash_new "$f" 16384
  # boot0: format with an 8 MiB back buffer (a volatile must fit in it), first save.
  vm boot0 "$f" --mem 256M < <(echo 'snapshot format --yes --backbuf-blocks 128'; pc_step) || return 1
  old=$(get boot0 new_hash)
  # calibration: a full, uncut save; its guest timing places the cuts.
  vm calib "$f" --mem 256M < <(pc_step) || return 1
  h=$(get calib cur_hash)
  [[ $h == "$old" ]] || { fail "calib: booted with /data hash $h, want $old"; return 1; }
  old=$(get calib new_hash)
  local s_start s_done up_end offset
  s_start=$(get calib save_start) s_done=$(get calib save_done) up_end=$(get calib uptime)
  # host seconds since QEMU start ~= guest uptime + offset (QEMU start-up)
  offset=$(awk -v w="$last_wall" -v u="$up_end" 'BEGIN{o = w - u - 0.1; if (o < 0) o = 0; printf "%.2f", o}')
  note "calibration: the $pc_mib MiB save ran from ${s_start}s to ${s_done}s guest uptime; host offset ${offset}s"
  # Cuts spread over the save window, the last one past its end.
  for ((k = 0; k < cuts; k++)); do
    pc_cut "$(awk -v o="$offset" -v a="$s_start" -v b="$s_done" -v k="$k" -v n="$cuts" \
      'BEGIN{printf "%.2f", o + a + (0.1 + 1.0 * k / (n - 1)) * (b - a)}')" || return 1
  done
  # Too few cuts landed inside the save (jitter): aim at its middle again.
  for ((k = 0; k < 4 && mid < 4; k++)); do
    pc_cut "$(awk -v o="$offset" -v a="$s_start" -v b="$s_done" -v e="$k" \
      'BEGIN{printf "%.2f", o + a + (0.3 + 0.15 * e) * (b - a)}')" || return 1
  done
  # At least one cut after the save returned (the guest idles 6 s before rebooting): the
  # saved state must be durable without an orderly reboot.
  for ((k = 0; k < 4 && late == 0; k++)); do
    pc_cut "$(awk -v o="$offset" -v b="$s_done" -v t="$k" 'BEGIN{printf "%.2f", o + b + 2 + 1.5 * t}')" || return 1
  done
  # After all the cuts a save must still run to its end and boot.
  vm final "$f" --mem 256M < <(pc_step) || return 1
  check "final: booted the last cut's state" is final cur_hash "$old"
  vm verify "$f" --mem 256M <<'STEP' || return 1
emit_str cur_hash "$(dirhash /data)"
STEP
  check "verify: the final save's state booted" is verify cur_hash "$(get final new_hash)"
  powercut_summary="$ok of $n power cuts survived ($mid during the save, $early before it, $late after it returned)"
  note "$powercut_summary"
  ((mid >= 4)) || fail "only $mid cuts landed during the save (need 4)"
  ((late >= 1)) || fail "no cut landed after a save had returned"
  ((ok == n)) || fail "$((n - ok)) cut(s) booted neither the old nor the new state"
}

# --- 6: corruption --------------------------------------------------------------------------
s_corrupt() {
  local f=$sdir/flash.img d
  flash_new "$f" 2048
  for d in s1 s2 vol; do
    mkdir -p "$sdir/$d/etc"
    printf '%s\n' "$d" >"$sdir/$d/etc/from-$d"
    head -c 20000 /dev/urandom | base64 >"$sdir/$d/etc/pad-$d"
  done
  local S=("$snapshot_host" --device "$f" --erase-size 65536)
  {
    "${S[@]}" format --yes &&
      "${S[@]}" commit --upper "$sdir/s1" --no-reboot &&
      "${S[@]}" commit --upper "$sdir/s2" --no-reboot &&
      "${S[@]}" save --upper "$sdir/vol" &&
      "${S[@]}" info --json >"$sdir/info.json"
  } >"$sdir/host-snapshot.out" 2>&1 || {
    fail "host snapshot commands failed:"; sed 's/^/      | /' "$sdir/host-snapshot.out"; return 1
  }
  vm boot1 "$f" <<'STEP' || return 1
probe
test -e /etc/from-s1 && test -e /etc/from-s2 && test -e /etc/from-vol
STEP
  check "boot1 (intact): 2 snapshots and the volatile replayed" \
    has boot1 dmesg_snapinit 'chain: Chain, 2 snapshot\(s\), 1 volatile'
  local off len pos
  read -r off len < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["snapshots"][1]; print(s["offset"], s["stored_size"])' "$sdir/info.json")
  pos=$((off + 256 + len / 2))
  python3 - "$f" "$pos" <<'PY'
import sys
path, pos = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as fh:
    fh.seek(pos); b = fh.read(1); fh.seek(pos); fh.write(bytes([b[0] ^ 0x5A]))
PY
  note "flipped the byte at $pos (snapshot 2 at $(printf '%#x' "$off"), payload $len bytes)"
  vm boot2 "$f" <<'STEP' || return 1
probe
test -e /etc/from-s1
test ! -e /etc/from-s2
test ! -e /etc/from-vol
STEP
  check "boot2: only snapshot 1 replayed" has boot2 dmesg_snapinit 'chain: Chain, 1 snapshot\(s\), 0 volatile'
  check "boot2: the log names the rejected block (offset $(printf '%#x' "$off") / $off)" \
    has boot2 dmesg_snapinit "([Rr]eject.*($off|$(printf '%#x' "$off"))|($off|$(printf '%#x' "$off")).*[Rr]eject)"
  check "boot2: the log says why (payload hash)" has boot2 dmesg_snapinit '(Payload|payload|sha|Sha|hash|Hash)'
  check "boot2: snapshot info reports the damage" has boot2 info_boot '(reject|corrupt|bad|mismatch|fail)'
  get boot2 dmesg_snapinit | grep -E 'chain:|Rejected|reject' | sed 's/^/      | /'
}

# --- 7: timing ---------------------------------------------------------------------------------
s_timing() {
  local f=$sdir/flash.img
  flash_new "$f" 2048
  mkdir -p "$sdir/up/etc"
  printf 'timing\n' >"$sdir/up/etc/timing"
  "$snapshot_host" --device "$f" format --yes >/dev/null &&
    "$snapshot_host" --device "$f" commit --upper "$sdir/up" --no-reboot >/dev/null &&
    "$snapshot_host" --device "$f" save --upper "$sdir/up" >/dev/null || { fail "host snapshot failed"; return 1; }
  vm boot1 "$f" <<'STEP' || return 1
probe
STEP
  local step
  for step in 'target /sbin/test-agent' 'chain on /dev/mtd0' 'chain: Chain, 1 snapshot' \
    'snapshot block seq 1 .* replayed' 'volatile block .* replayed' 'overlay mounted' \
    'root switched' 'peak RSS' 'exec /sbin/test-agent'; do
    check "boot1: snapinit logged '$step'" has boot1 dmesg_snapinit "snapinit: $step"
  done
  echo "  snapinit log of boot1 (kernel timestamps):"
  get boot1 dmesg_snapinit | sed 's/^/      | /'
  check "snapinit start->exec measured on every boot" test "${#exec_ms[@]}" -gt 0
}

run_scenario 1 blank s_blank
run_scenario 2 config s_config
run_scenario 3 commit s_commit
run_scenario 4 rollback s_rollback
run_scenario 5 powercut s_powercut
run_scenario 6 corrupt s_corrupt
run_scenario 7 timing s_timing

# --- report -------------------------------------------------------------------------------------
stats() { # numbers on stdin -> "min/median/max (n)"
  sort -g | awk '{v[NR]=$1} END{if (NR==0) {print "n/a"; exit}
    printf "min %s / median %s / max %s (%d boots)", v[1], v[int((NR+1)/2)], v[NR], NR}'
}
echo
echo "snapinit QEMU boot tests"
printf '%-14s %-6s %8s\n' SCENARIO RESULT SECONDS
nfail=0
for i in "${!names[@]}"; do
  printf '%-14s %-6s %8s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  [[ ${results[$i]} == PASS ]] || nfail=$((nfail + 1))
done
echo
echo "build (s): $(tr '\n' ' ' <"$work/bin/build-times")(kernel: cached after the first build)"
if ((${#walls[@]})); then
  echo "wall time per boot (s): $(printf '%s\n' "${walls[@]}" | awk '{print $2}' | stats)"
fi
if ((${#exec_ms[@]})); then
  echo "snapinit start->exec in the guest (ms): $(printf '%s\n' "${exec_ms[@]}" | stats)"
fi
[[ -z ${powercut_summary:-} ]] || echo "power cuts: $powercut_summary"
echo "total: $(secs "$T_START" "$(now)") s, ${#names[@]} scenarios, $nfail failed"
if ((nfail)); then
  echo "console logs of failed scenarios:"
  printf '  %s\n' "${failed_logs[@]}"
  echo "artifacts kept in $work"
  exit 1
fi
if ((keep)); then
  echo "artifacts kept in $work"
else
  rm -rf "$work"
fi
