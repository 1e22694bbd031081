# The QEMU scenario runner's library (sourced by qemu/run-tests.sh and by the scenarios,
# never run). Nothing here names an architecture: those details are the table in
# qemu/arch.sh. A scenario (qemu/scenarios/NN-name.sh, function scenario_<name>) boots the
# current architecture ($ARCH) with `vm`, and checks the guest's JSON results with
# check/get/is/has/empty; it returns non-zero (or calls fail) to fail.
#
# State while a scenario runs: ARCH (its architecture), CUR ("arch/scenario", for messages),
# SDIR (its directory: step scripts, console logs, result files, flash images), WORK (the
# run's directory), KERNEL[arch], ROOTFS[arch], BIN[arch] (the build of each architecture),
# BUILT (the architectures that built), SNAPSHOT_HOST (the host's `snapshot`, for images
# written on the host), MEDIUM (the run's flash medium, below).
#
# The medium is a dimension of the run (run-tests.sh --medium), never a branch on the
# architecture: nor (default) = the flash image is the MTD partition rootfs_data (/dev/mtd0);
# ubi = the flash image holds UBI (qemu/mkflash.sh --ubi), block2mtd's MTD is attached at
# boot and rootfs_data is the UBI volume /dev/ubi0_0; nandsim = a RAM-only raw NAND with
# 2 KiB pages attached by UBI, no flash file, no volume at boot. A scenario lists the media
# it runs on in SCENARIO_MEDIA[name] (default: nor); it writes its flash with flash_new /
# vol_new + flash_from_vol and names the chain's device through the MEDIUM_* patterns, so
# one file serves every medium.

QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$QEMU_DIR/arch.sh"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

declare -A KERNEL ROOTFS BIN
BUILT=()
ARCH='' CUR='' SDIR='' CUR_FAIL=0
WALLS=()  # "arch wall" of every boot that ran to its end
EXECS=()  # "arch ms": snapinit's start (the kernel's "Run /sbin/snapinit") to its exec line
RSS=()    # "arch kB": snapinit's logged peak RSS
NOTES=()  # "arch/scenario: text" shown under the table
LAST_WALL='' LAST_EXEC_MS=''
BOOT_TIMEOUT=${BOOT_TIMEOUT:-240}

fail() { echo "  FAIL [$CUR]: $*"; CUR_FAIL=1; }
note() { echo "  [$CUR] $*"; }
summary() { NOTES+=("$CUR: $*"); note "$*"; } # a note that also goes under the table
check() { # check DESCRIPTION COMMAND... : pass quietly, fail loudly
  local d=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "  ok   [$CUR] $d"
  else
    fail "$d"
  fi
}
get() { "$QEMU_DIR/result-get.sh" "$SDIR/$1.jsonl" "$2" 2>/dev/null; } # get TAG KEY
is() { [[ $(get "$1" "$2") == "$3" ]]; }                               # is TAG KEY VALUE
# (no grep -q: with pipefail, an early exit would SIGPIPE the reader and fail)
has() { get "$1" "$2" | grep -E -- "$3" >/dev/null; } # has TAG KEY ERE
empty() { [[ -z $(get "$1" "$2") ]]; }                 # empty TAG KEY
lacks() { ! has "$@"; }                                 # lacks TAG KEY ERE
MEDIUM=nor # run-tests.sh --medium
declare -A SCENARIO_MEDIA # scenario -> "nor ubi ..." (unset: nor)
# medium_load: the medium's parameters, once run-tests.sh has set MEDIUM.
#   ERASE_SIZE         the erase block of the chain: what the host's `snapshot --erase-size` gets
#   MEDIUM_CHAIN_RE    ERE of snapinit's "chain on DEVICE (NAME" log line
#   MEDIUM_DEV         the chain's device, for messages
medium_load() {
  case $MEDIUM in
    nor) ERASE_SIZE=65536 MEDIUM_DEV=/dev/mtd0
      MEDIUM_CHAIN_RE='snapinit: chain on /dev/mtd0 \(rootfs_data\)' ;;
    ubi | nandsim)
      if [[ $MEDIUM == ubi ]]; then
        ERASE_SIZE=$("$QEMU_DIR/mkflash.sh" --ubi --geometry | awk '{print $4}')
      else
        ERASE_SIZE= # nandsim: the scenario reads the LEB size in the guest
      fi
      MEDIUM_DEV=/dev/ubi0_0
      MEDIUM_CHAIN_RE='snapinit: chain on /dev/ubi[0-9]+_[0-9]+ \(rootfs_data' ;;
    *) echo "lib.sh: unknown medium '$MEDIUM' (nor, ubi, nandsim)" >&2; return 2 ;;
  esac
}
medium_load
# flash_new FILE [KiB]: an empty flash of the medium (nor: erased; ubi: UBI with an empty
# rootfs_data volume filling it).
flash_new() {
  case $MEDIUM in
    nor) "$QEMU_DIR/mkflash.sh" "$1" "${2:-2048}" >/dev/null 2>&1 ;;
    ubi) "$QEMU_DIR/mkflash.sh" --ubi "$1" "${2:-2048}" >/dev/null 2>&1 ;;
    *) fail "flash_new: the $MEDIUM medium has no flash file"; return 1 ;;
  esac
}
# vol_new FILE [KiB]: an erased file the size of the chain's partition (NOR) or volume (UBI)
# on a flash of KiB: what the host's `snapshot --device FILE --erase-size $ERASE_SIZE` writes.
vol_new() {
  local bytes=$((${2:-2048} * 1024))
  [[ $MEDIUM == nor ]] || bytes=$("$QEMU_DIR/mkflash.sh" --ubi --geometry "${2:-2048}" | awk '{print $8}')
  head -c "$bytes" /dev/zero | tr '\0' '\377' >"$1"
}
# flash_kib BLOCKS: the flash size (KiB) whose partition (NOR) or volume (UBI: the PEBs UBI
# keeps for itself added) has BLOCKS erase blocks of ERASE_SIZE.
flash_kib() {
  local own=0
  [[ $MEDIUM == nor ]] || own=$((32 - $("$QEMU_DIR/mkflash.sh" --ubi --geometry 2048 | awk '{print $6}')))
  echo $((($1 + own) * 64))
}
# flash_from_vol VOLUME FLASH [KiB]: the flash image holding that partition/volume content.
flash_from_vol() {
  case $MEDIUM in
    nor) cp "$1" "$2" ;;
    ubi) "$QEMU_DIR/mkflash.sh" --ubi --volume-image "$1" "$2" "${3:-2048}" >/dev/null 2>&1 ;;
    *) fail "flash_from_vol: the $MEDIUM medium has no flash file"; return 1 ;;
  esac
}
# same_volume FLASH1 FLASH2: the chain's partition holds the same bytes in both images (UBI:
# the volume's LEBs, unmapped ones read as 0xFF; UBI itself may write its own headers, e.g.
# formatting empty PEBs on attach, which is no change of the volume).
same_volume() {
  if [[ $MEDIUM == nor ]]; then
    cmp -s "$1" "$2"
  else
    cmp -s <("$QEMU_DIR/ubi-volume.py" "$1") <("$QEMU_DIR/ubi-volume.py" "$2")
  fi
}
# has_partition TAG: the boot's flash has a partition/volume named rootfs_data (the agent's
# /proc/mtd; probe's UBI volume list).
has_partition() {
  if [[ $MEDIUM == nor ]]; then has "$1" mtd '"rootfs_data"'; else has "$1" ubi_volumes ' rootfs_data$'; fi
}

# other_arch: the next architecture of this run after $ARCH (cyclic), for scenarios that
# carry a flash from one architecture to another; empty when only one built.
other_arch() {
  local i n=${#BUILT[@]}
  for ((i = 0; i < n; i++)); do
    if [[ ${BUILT[$i]} == "$ARCH" ]]; then
      ((n > 1)) && echo "${BUILT[$(((i + 1) % n))]}"
      return 0
    fi
  done
}

# The guest library put in front of every step script (busybox sh); the agent adds
# emit_str KEY STRING, emit_lines KEY <FILE, emit_json KEY JSON.
guest_lib() {
  cat <<'LIB'
# --- qemu/lib.sh guest library ---
dirhash() { # DIR -> sha256 over the sorted listing (modes, link targets) and every file's content; "absent"
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
	ubi_volumes >/tmp/p.ubi
	emit_lines ubi_volumes </tmp/p.ubi
}
ubi_volumes() { # "ubiX_Y NAME" of every UBI volume (none without UBI)
	for v in /sys/class/ubi/ubi*_*; do
		[ -e "$v/name" ] && echo "${v##*/} $(cat "$v/name")"
	done
	return 0
}
state() { # PATH... -> one line each: content, link, dir listing or ABSENT
	for p in "$@"; do
		if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"
		elif [ -f "$p" ]; then echo "$p = $(cat "$p")"
		elif [ -d "$p" ]; then echo "$p/ $(ls -A "$p" | tr '\n' ' ')"
		else echo "$p ABSENT"; fi
	done
}
up() { cut -d' ' -f1 /proc/uptime; }
set -e
# --- step ---
LIB
}

# vm TAG FLASH [boot.sh args...] <<'STEP' ... STEP        (on $ARCH; FLASH '': none)
# vm_on ARCH TAG FLASH [boot.sh args...] < step           (on another architecture)
# Boots snapinit (target: the agent) with the step script from stdin; the results land in
# $SDIR/TAG.jsonl, the console in $SDIR/TAG.log; the medium is the run's ($MEDIUM). Fails
# the scenario unless QEMU ran to the guest's reboot (or to the asked-for kill: --kill-after,
# --kill-on), the agent finished and the step exited 0 (a killed boot is only checked for the
# kill). No printk.devkmsg=on: the kernel's default /dev/kmsg rate limit stays, so the timing
# scenario proves every snapinit line still reaches the log (fcc9350).
vm() { vm_on "$ARCH" "$@"; }
vm_on() {
  local arch=$1 tag=$2 flash=$3
  shift 3
  local killed=0 a out rc=0 line wall
  for a in "$@"; do [[ $a != --kill-after && $a != --kill-on ]] || killed=1; done
  { guest_lib; cat; } >"$SDIR/$tag.sh"
  out=$("$QEMU_DIR/boot.sh" --arch "$arch" --kernel "${KERNEL[$arch]}" --rootfs "${ROOTFS[$arch]}" \
    --medium "$MEDIUM" ${flash:+--flash "$flash"} --init /sbin/snapinit --script "$SDIR/$tag.sh" \
    --log "$SDIR/$tag.log" --result "$SDIR/$tag.jsonl" --timeout "$BOOT_TIMEOUT" \
    --append "snapinit.init=/sbin/test-agent" "$@" 2>"$SDIR/$tag.boot.err") || rc=$?
  printf '%s\n' "$out" >"$SDIR/$tag.boot.out"
  line=$(tail -n 1 <<<"$out")
  wall=${line##*wall=}
  LAST_WALL=$wall
  if ((rc != 0)); then
    fail "$tag ($arch): boot failed: ${line:-no boot line} (console: $SDIR/$tag.log)"
    sed 's/^/      /' "$SDIR/$tag.boot.err" | tail -n 30
    return 1
  fi
  if ((killed)); then
    [[ $line == *result=killed* ]] || note "$tag: guest finished before the kill ($line)"
    return 0
  fi
  WALLS+=("$arch $wall")
  record_boot "$arch" "$tag"
  if ! is "$tag" done true; then
    fail "$tag ($arch): agent did not finish (no done=true; console: $SDIR/$tag.log)"
    tail -n 20 "$SDIR/$tag.log" | sed 's/^/      | /'
    return 1
  fi
  if ! is "$tag" status 0; then
    fail "$tag ($arch): step script exited $(get "$tag" status); its output:"
    get "$tag" output | tail -n 20 | sed 's/^/      | /'
    return 1
  fi
  echo "  boot [$CUR] $tag${arch:+ ($arch)}: wall ${wall}s, snapinit start->exec ${LAST_EXEC_MS:-?} ms"
}

# snapinit's own time, from the console log's kernel timestamps: the kernel's "Run
# /sbin/snapinit as init process" line to snapinit's "exec" line; and its peak RSS.
record_boot() { # ARCH TAG
  local rss
  LAST_EXEC_MS=$(awk 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { t = substr($0, 2, RLENGTH - 2) + 0
      if ($0 ~ /Run \/sbin\/snapinit as init/) a = t
      if ($0 ~ /snapinit: exec /) b = t }
    END { if (a != "" && b != "") printf "%.1f", (b - a) * 1000 }' "$SDIR/$2.log")
  [[ -z $LAST_EXEC_MS ]] || EXECS+=("$1 $LAST_EXEC_MS")
  rss=$(get "$2" dmesg_snapinit | sed -n 's/.*snapinit: peak RSS \([0-9]*\) kB.*/\1/p' | tail -n 1)
  [[ -z $rss ]] || RSS+=("$1 $rss")
}

# --- the run ---------------------------------------------------------------------------
ROWS=()    # "arch scenario PASS|FAIL seconds"
FAILED_LOGS=()

run_scenario() { # run_scenario ARCH NAME
  local t0 t1 f
  ARCH=$1
  CUR="$1/$2" CUR_FAIL=0
  SDIR=$WORK/$1/$2
  mkdir -p "$SDIR"
  echo "=== $CUR"
  t0=$(now)
  "scenario_$2" || CUR_FAIL=1
  t1=$(now)
  if ((CUR_FAIL)); then
    ROWS+=("$1 $2 FAIL $(secs "$t0" "$t1")")
    for f in "$SDIR"/*.log; do [[ -e $f ]] && FAILED_LOGS+=("$f"); done
  else
    ROWS+=("$1 $2 pass $(secs "$t0" "$t1")")
  fi
}

stats() { # numbers on stdin -> "min/median/max (n)"
  sort -g | awk '{v[NR]=$1} END{if (NR==0) {print "n/a"; exit}
    printf "min %s / median %s / max %s (%d boots)", v[1], v[int((NR+1)/2)], v[NR], NR}'
}

# The pass/fail table: one row per scenario, one column per architecture, seconds in cells.
report_table() { # ARCH... (columns) ; SCENARIOS (rows) from the caller
  local a s r cell
  printf '%-11s' scenario
  for a in "$@"; do printf ' %-13s' "$a"; done
  echo
  for s in "${SCENARIOS[@]}"; do
    printf '%-11s' "$s"
    for a in "$@"; do
      cell=-
      for r in "${ROWS[@]}"; do
        read -r -a f <<<"$r"
        [[ ${f[0]} == "$a" && ${f[1]} == "$s" ]] && cell="${f[2]} ${f[3]}s"
      done
      printf ' %-13s' "$cell"
    done
    echo
  done
}
