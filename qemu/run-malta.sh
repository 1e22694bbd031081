#!/usr/bin/env bash
# snapinit on QEMU's MIPS malta board, little- and big-endian, and the
# cross-architecture proof that the chain is the same bytes everywhere.
#   qemu/run-malta.sh [--arch mipsel,mips] [--only blank,chain,roundtrip,powercut] [--keep]
# Builds (cached where possible): the malta kernels (build-kernel.sh mipsel|mips),
# snapinit + snapshot for each MIPS target (cross.sh), Debian's static busybox
# for each (busybox-mips.sh), the squashfs roots (mkrootfs.sh --busybox), and
# the x86_64 side with qemu/build.sh (kernel, host `snapshot`, x86_64 root).
# Scenarios, per MIPS architecture:
#   blank      erased flash: overlay root on tmpfs, `chain: Empty`, exec of the target
#   chain      ONE image written on the x86_64 host by the host-built `snapshot --device IMG
#              --erase-size 65536` (2 snapshots + a volatile; whiteouts of a snapshot file and
#              a squashfs file, an opaque directory, a modified file) replays exactly: files
#              present/absent/contents, and /etc (listing + every file's sha256) identical to
#              the same image booted on x86_64; the boot leaves the image byte-identical
#   roundtrip  `snapshot` inside the guest: format, edit /etc, save, reboot, commit, reboot;
#              then the flash the guest wrote boots on x86_64 with the same /etc
#   powercut   QEMU SIGKILLed at 20/50/80 % of the guest's 4 MiB `snapshot save` (3 cuts):
#              each next boot shows the old or the new data; then a save works and survives
# Prints one table row per architecture/scenario; exit 1 on any failure. As root on Debian
# bookworm (installs its packages through deps.sh / deps-mips.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
arches=mipsel,mips only=blank,chain,roundtrip,powercut keep=0
while (($#)); do
  case $1 in
    --arch) arches=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "run-malta.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
work=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-malta.XXXXXX")
((keep)) || trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

rows=() failed=0 notes=() cur='' cur_fail=0
note() { notes+=("$*"); echo "  note: $*"; }
fail() { cur_fail=1; echo "  FAIL [$cur]: $*"; }
check() { # DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then echo "  ok   [$cur] $d"; else fail "$d"; fi
}
get() { "$here/result-get.sh" "$sdir/$1.jsonl" "$2" 2>/dev/null; }
has() { get "$1" "$2" | grep -E -- "$3" >/dev/null; }
is() { [[ $(get "$1" "$2") == "$3" ]]; }

# --- the guest-side helpers prepended to every step script ---
guest_lib() {
  cat <<'LIB'
dirhash() { # DIR -> sha256 over the sorted listing (modes, link targets) and every file's content
	[ -d "$1" ] || { echo absent; return 0; }
	( cd "$1" && { find . | sort | while read -r p; do stat -c '%A %N' "$p"; done
		find . -type f | sort | xargs -r sha256sum; } | sha256sum | cut -d' ' -f1 )
}
state() { # PATH... -> one line each: content, link, dir or ABSENT
	for p in "$@"; do
		if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"
		elif [ -f "$p" ]; then echo "$p = $(cat "$p")"
		elif [ -d "$p" ]; then echo "$p/ $(ls -A "$p" | tr '\n' ' ')"
		else echo "$p ABSENT"; fi
	done
}
up() { cut -d' ' -f1 /proc/uptime; }
set -e
LIB
}

walls=() execs=()
# vm ARCH TAG FLASH [boot.sh args] < step : one boot, result in $sdir/TAG.jsonl
vm() {
  local arch=$1 tag=$2 flash=$3 out rc=0 line
  shift 3
  { guest_lib; cat; } >"$sdir/$tag.sh"
  out=$("$here/boot.sh" --arch "$arch" --kernel "${kernel[$arch]}" --rootfs "${rootfs[$arch]}" \
    --flash "$flash" --init /sbin/snapinit --script "$sdir/$tag.sh" --log "$sdir/$tag.log" \
    --result "$sdir/$tag.jsonl" --timeout 180 --append "snapinit.init=/sbin/test-agent" "$@" \
    2>"$sdir/$tag.boot.err") || rc=$?
  line=$(tail -n 1 <<<"$out")
  if ((rc != 0)); then
    fail "$tag: boot failed: ${line:-no boot line} (console: $sdir/$tag.log)"
    tail -n 25 "$sdir/$tag.log" | sed 's/^/      | /'
    return 1
  fi
  if ! is "$tag" done true; then
    fail "$tag: agent did not finish (console: $sdir/$tag.log)"
    tail -n 20 "$sdir/$tag.log" | sed 's/^/      | /'
    return 1
  fi
  if ! is "$tag" status 0; then
    fail "$tag: step exited $(get "$tag" status):"
    get "$tag" output | tail -n 20 | sed 's/^/      | /'
    return 1
  fi
  # snapinit's own time: kernel "Run /sbin/snapinit" to snapinit's "exec" line.
  local ms
  ms=$(awk 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { t = substr($0, 2, RLENGTH - 2) + 0
      if ($0 ~ /Run \/sbin\/snapinit as init/) a = t
      if ($0 ~ /snapinit: exec /) b = t }
    END { if (a != "" && b != "") printf "%.0f", (b - a) * 1000 }' "$sdir/$tag.log")
  walls+=("$arch ${line##*wall=}") execs+=("$arch ${ms:-?}")
  echo "  boot [$cur] $tag: ${line##*wall=} s wall, snapinit start->exec ${ms:-?} ms"
}

run() { # ARCH SCENARIO FUNCTION
  local arch=$1 name=$2 fn=$3 t0 t1
  [[ ,$only, == *,$name,* ]] || return 0
  cur="$arch/$name" cur_fail=0
  sdir=$work/$arch-$name
  mkdir -p "$sdir"
  echo "== $cur"
  t0=$(now)
  "$fn" "$arch" || cur_fail=1
  t1=$(now)
  if ((cur_fail)); then
    rows+=("$(printf '%-8s %-10s FAIL %6s s' "$arch" "$name" "$(secs "$t0" "$t1")")")
    failed=1
  else
    rows+=("$(printf '%-8s %-10s pass %6s s' "$arch" "$name" "$(secs "$t0" "$t1")")")
  fi
}
flash_new() { "$here/mkflash.sh" "$1" "${2:-2048}" >/dev/null 2>&1; }

# --- builds -----------------------------------------------------------------------------
declare -A kernel rootfs ktime
builds=()
"$here/deps-mips.sh"
echo "== build x86_64 (qemu/build.sh)"
t0=$(now)
kernel[x86_64]=$("$here/build.sh" "$work/x86_64" | tail -n 1)
rootfs[x86_64]=$work/x86_64/rootfs.squashfs
snapshot_host=$work/x86_64/snapshot
builds+=("x86_64: $(secs "$t0" "$(now)") s ($(tr '\n' ' ' <"$work/x86_64/build-times"))")
IFS=, read -r -a arch_list <<<"$arches"
ok_arches=()
for arch in "${arch_list[@]}"; do
  echo "== build $arch"
  cur="$arch/build" cur_fail=0
  t0=$(now)
  if ! kernel[$arch]=$("$here/build-kernel.sh" "$arch" | tail -n 1); then
    fail "malta kernel build failed"
  fi
  t1=$(now)
  ktime[$arch]=$(secs "$t0" "$t1")
  if ((!cur_fail)) && ! "$here/cross.sh" "$arch" "$work/$arch"; then
    fail "cross.sh $arch failed"
  fi
  t2=$(now)
  if ((!cur_fail)); then
    bb=$("$here/busybox-mips.sh" "$arch" | tail -n 1) || fail "busybox-mips.sh $arch failed"
  fi
  if ((!cur_fail)); then
    rootfs[$arch]=$work/$arch/rootfs.squashfs
    "$here/mkrootfs.sh" "${rootfs[$arch]}" --busybox "$bb" --busybox-list "${bb%/*}/busybox.list" \
      --snapinit "$work/$arch/snapinit" --snapshot "$work/$arch/snapshot" --agent "$here/agent.sh" ||
      fail "mkrootfs.sh failed"
  fi
  if ((cur_fail)); then
    rows+=("$(printf '%-8s %-10s FAIL' "$arch" build)")
    failed=1
    continue
  fi
  ok_arches+=("$arch")
  builds+=("$arch: kernel $(secs "$t0" "$t1") s (cached when ~0), cross $(secs "$t1" "$t2") s ($(tr '\n' ' ' <"$work/$arch/build-times")); snapinit $(stat -c %s "$work/$arch/snapinit") B, snapshot $(stat -c %s "$work/$arch/snapshot") B stripped")
done

# --- the host-written chain (built once, booted on every architecture) --------------------
chain_img=$work/chain.img
mkchain() {
  local d=$work/chain-src S=("$snapshot_host" --device "$chain_img" --erase-size 65536)
  rm -rf "$d"
  mkdir -p "$d"/s1/etc/opq "$d"/s2/etc/opq "$d"/vol/etc
  printf 'one\n' >"$d/s1/etc/s1-file"
  printf 'keep-s1\n' >"$d/s1/etc/keep"
  printf 'doomed\n' >"$d/s1/etc/doomed"
  printf 'a\n' >"$d/s1/etc/opq/a"
  printf 'b\n' >"$d/s1/etc/opq/b"
  ln -s s1-file "$d/s1/etc/s1-link"
  printf 'keep-s2\n' >"$d/s2/etc/keep"
  printf 'two\n' >"$d/s2/etc/s2-file"
  printf 'c\n' >"$d/s2/etc/opq/c"
  mknod "$d/s2/etc/doomed" c 0 0       # whiteout of a snapshot-1 file
  mknod "$d/s2/etc/rom-marker" c 0 0   # whiteout of a squashfs file
  python3 -c 'import os,sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")' "$d/s2/etc/opq"
  printf 'one-vol\n' >"$d/vol/etc/s1-file"
  printf 'volatile\n' >"$d/vol/etc/vol-file"
  "$here/mkflash.sh" "$chain_img" 2048 >/dev/null 2>&1
  "${S[@]}" format --yes &&
    "${S[@]}" commit --upper "$d/s1" --no-reboot &&
    "${S[@]}" commit --upper "$d/s2" --no-reboot &&
    "${S[@]}" save --upper "$d/vol" &&
    "${S[@]}" info
}
chain_paths='/etc/s1-file /etc/s1-link /etc/keep /etc/doomed /etc/rom-marker /rom/etc/rom-marker /etc/opq /etc/opq/a /etc/opq/b /etc/opq/c /etc/s2-file /etc/vol-file'
chain_want="/etc/s1-file = one-vol
/etc/s1-link -> s1-file
/etc/keep = keep-s2
/etc/doomed ABSENT
/etc/rom-marker ABSENT
/rom/etc/rom-marker = squashfs-original
/etc/opq/ c 
/etc/opq/a ABSENT
/etc/opq/b ABSENT
/etc/opq/c = c
/etc/s2-file = two
/etc/vol-file = volatile"
etc_ref='' etc_tree_ref=''
etc_tree() { get "$1" tree | grep -E " '/etc(/|')" ; }

s_blank() {
  local a=$1
  flash_new "$sdir/flash.img"
  vm "$a" boot1 "$sdir/flash.img" <<'STEP' || return 1
uname -m
snapshot info >/tmp/i 2>&1 || true
emit_lines info </tmp/i
STEP
  check "root is an overlay" has boot1 mounts ' / / .* - overlay '
  check "/proc/mtd names rootfs_data" has boot1 mtd '"rootfs_data"'
  check "snapinit found the chain on /dev/mtd0" has boot1 dmesg_snapinit 'snapinit: chain on /dev/mtd0 \(rootfs_data\)'
  check "snapinit saw the empty chain" has boot1 dmesg_snapinit 'snapinit: chain: Empty'
  check "plain tmpfs overlay" has boot1 dmesg_snapinit 'plain tmpfs overlay'
  check "upper layer is a tmpfs" has boot1 mounts ' /overlay .* - tmpfs '
  check "snapinit exec'd the agent" has boot1 dmesg_snapinit 'snapinit: exec /sbin/test-agent'
  check "snapinit logged its peak RSS" has boot1 dmesg_snapinit 'snapinit: peak RSS [0-9]+ kB'
  check "snapshot info (guest) sees an empty partition" has boot1 info '^status: +empty'
}

s_chain() {
  local a=$1
  cp "$chain_img" "$sdir/flash.img"
  vm "$a" boot1 "$sdir/flash.img" <<STEP || return 1
state $chain_paths >/tmp/st
emit_lines state </tmp/st
emit_str etc_hash "\$(dirhash /etc)"
STEP
  check "2 snapshots and the volatile replayed" has boot1 dmesg_snapinit 'chain: Chain, 2 snapshot\(s\), 1 volatile'
  check "volatile in place" has boot1 dmesg_snapinit 'volatile candidate #0 in place'
  check "files present/absent/contents as written on the host" \
    test "$(get boot1 state)" == "$chain_want"
  if [[ $(get boot1 state) != "$chain_want" ]]; then
    diff <(echo "$chain_want") <(get boot1 state) | sed 's/^/      | /'
  fi
  check "the boot did not write the flash" cmp -s "$chain_img" "$sdir/flash.img"
  if [[ $a == x86_64 ]]; then
    etc_ref=$(get boot1 etc_sha256) etc_tree_ref=$(etc_tree boot1)
    check "x86_64 reference recorded" test -n "$etc_ref"
  elif [[ -n $etc_ref ]]; then
    check "/etc file hashes identical to the x86_64 boot of the same image" \
      test "$(get boot1 etc_sha256)" == "$etc_ref"
    check "/etc listing (modes, sizes, links) identical to x86_64" \
      test "$(etc_tree boot1)" == "$etc_tree_ref"
  else
    fail "no x86_64 reference (the x86_64 chain boot failed)"
  fi
}

s_roundtrip() {
  local a=$1
  flash_new "$sdir/flash.img"
  vm "$a" boot1 "$sdir/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'config system\n\toption hostname saved-on-mips\n' >/etc/config/system
mkdir -p /etc/newdir
printf 'new file\n' >/etc/newdir/newfile
ln -s ../hostname /etc/config/hostlink
rm /etc/rom-marker
emit_str want "$(dirhash /etc)"
snapshot save
STEP
  local want
  want=$(get boot1 want)
  vm "$a" boot2 "$sdir/flash.img" <<'STEP' || return 1
emit_str etc_hash "$(dirhash /etc)"
test ! -e /etc/rom-marker
test -e /rom/etc/rom-marker
( cd /overlay/upper && find . -mindepth 1 | sort ) >/tmp/u
emit_lines upper </tmp/u
snapshot commit --no-reboot
STEP
  check "boot2: /etc as saved (hash)" is boot2 etc_hash "$want"
  check "boot2: the changes are in the volatile layer" has boot2 upper '^\./etc/newdir/newfile$'
  check "boot2: the deletion is a whiteout in the volatile layer" has boot2 upper '^\./etc/rom-marker$'
  vm "$a" boot3 "$sdir/flash.img" <<'STEP' || return 1
emit_str etc_hash "$(dirhash /etc)"
( cd /overlay/upper && find . -mindepth 1 | sort ) >/tmp/u
emit_lines upper </tmp/u
( cd /snapshot && find . -mindepth 1 | sort ) >/tmp/s
emit_lines snap </tmp/s
STEP
  check "boot3: /etc unchanged after commit" is boot3 etc_hash "$want"
  check "boot3: committed into the snapshot layer" has boot3 snap '^\./etc/newdir/newfile$'
  check "boot3: volatile layer empty" test -z "$(get boot3 upper)"
  check "boot3: chain of 1 snapshot" has boot3 dmesg_snapinit 'chain: Chain, 1 snapshot\(s\)'
  # The flash this guest wrote, booted on x86_64.
  [[ -n ${kernel[x86_64]:-} ]] || return 0
  vm x86_64 x86boot "$sdir/flash.img" <<'STEP' || return 1
emit_str etc_hash "$(dirhash /etc)"
STEP
  check "the flash written on $a boots on x86_64 with the same /etc" is x86boot etc_hash "$want"
}

s_powercut() {
  local a=$1 f=$sdir/flash.img
  flash_new "$f" 16384
  # boot1: a 8 MiB back buffer, 4 MiB of random data saved uncompressed (state A), timed.
  vm "$a" boot1 "$f" <<'STEP' || return 1
snapshot format --yes --backbuf-blocks 128
mkdir -p /data
head -c 4194304 /dev/urandom >/data/blob
emit_str hash_now "$(sha256sum </data/blob | cut -c1-64)"
t0=$(up)
snapshot save --no-compress
emit_str save_secs "$(awk -v a="$t0" -v b="$(up)" 'BEGIN{print b-a}')"
STEP
  local prev secs frac delay n=0 mid=0 ok=0 hb hn landed
  prev=$(get boot1 hash_now) secs=$(get boot1 save_secs)
  note "$a: a 4 MiB save takes ${secs}s in the guest"
  { guest_lib; cat <<'STEP'; } >"$sdir/cut.sh"
head -c 4194304 /dev/urandom >/data/blob
emit_str hash_b "$(sha256sum </data/blob | cut -c1-64)"
sync
emit_str save_start "$(up)"
snapshot save --no-compress
emit_str save_done "$(up)"
STEP
  for frac in 0.2 0.5 0.8; do
    n=$((n + 1))
    delay=$(awk -v s="$secs" -v f="$frac" 'BEGIN{printf "%.2f", s * f}')
    # The cut boot: new data, save, SIGKILL QEMU $delay s after the guest said the save starts.
    : >"$sdir/cut$n.jsonl"
    "$here/boot.sh" --arch "$a" --kernel "${kernel[$a]}" --rootfs "${rootfs[$a]}" --flash "$f" \
      --init /sbin/snapinit --script "$sdir/cut.sh" --log "$sdir/cut$n.log" --result "$sdir/cut$n.jsonl" \
      --timeout 180 --append "snapinit.init=/sbin/test-agent" >"$sdir/cut$n.out" 2>&1 &
    local bpid=$! i tpid qpid
    for ((i = 0; i < 3000; i++)); do
      grep -q '"key":"save_start"' "$sdir/cut$n.jsonl" 2>/dev/null && break
      sleep 0.02
    done
    sleep "$delay"
    tpid=$(pgrep -P "$bpid" -x timeout || true)
    qpid=$([[ -n $tpid ]] && pgrep -P "$tpid" || true)
    if [[ -n $qpid ]]; then kill -KILL $qpid; else fail "cut $n: no QEMU process to cut"; fi
    wait "$bpid" || true
    grep -q '"key":"save_done"' "$sdir/cut$n.jsonl" && landed=after || { landed=during; mid=$((mid + 1)); }
    hb=$(get "cut$n" hash_b)
    [[ -n $hb ]] || { fail "cut $n: the guest never reached the save"; continue; }
    vm "$a" "after$n" "$f" <<'STEP' || return 1
emit_str hash_now "$(sha256sum </data/blob | cut -c1-64)"
snapshot info >/tmp/i 2>&1
emit_lines info </tmp/i
STEP
    hn=$(get "after$n" hash_now)
    local which=NEITHER
    [[ $hn == "$prev" ]] && which=old
    [[ $hn == "$hb" ]] && which=new
    check "cut $n (${delay}s into the save, landed $landed): next boot shows the $which state" \
      test "$which" != NEITHER
    [[ $which == NEITHER ]] || ok=$((ok + 1))
    prev=$hn
  done
  note "$a: $ok of $n power cuts survived ($mid landed while the save was running)"
  check "at least one cut landed while the save was running" test "$mid" -ge 1
  vm "$a" final1 "$f" <<'STEP' || return 1
printf 'after the cuts\n' >/data/after
snapshot save
STEP
  vm "$a" final2 "$f" <<'STEP' || return 1
state /data/after >/tmp/st
emit_lines state </tmp/st
STEP
  check "a save after the cuts survives a reboot" is final2 state '/data/after = after the cuts'
}

if [[ ,$only, == *,chain,* ]]; then
  echo "== host: snapshot --device chain.img (x86_64 build)"
  if mkchain >"$work/chain.out" 2>&1; then
    sed 's/^/  | /' "$work/chain.out"
    run x86_64 chain s_chain
  else
    sed 's/^/  | /' "$work/chain.out"
    rows+=("x86_64   chain      FAIL (host snapshot)")
    failed=1
  fi
fi
for arch in "${ok_arches[@]}"; do
  run "$arch" blank s_blank
  [[ ! -s $chain_img ]] || run "$arch" chain s_chain
  run "$arch" roundtrip s_roundtrip
  run "$arch" powercut s_powercut
done

stats() { sort -g | awk '{v[NR]=$1} END{if (NR==0) {print "n/a"; exit}
  printf "min %s / median %s / max %s (%d boots)", v[1], v[int((NR+1)/2)], v[NR], NR}'; }
echo
echo "snapinit on MIPS malta (and x86_64)"
printf '%-8s %-10s %s\n' arch scenario result
printf '%s\n' "${rows[@]}"
echo
echo "builds:"
printf '  %s\n' "${builds[@]}"
for arch in x86_64 "${ok_arches[@]}"; do
  w=$(printf '%s\n' "${walls[@]}" | awk -v a="$arch" '$1 == a {print $2}' | stats)
  e=$(printf '%s\n' "${execs[@]}" | awk -v a="$arch" '$1 == a && $2 != "?" {print $2}' | stats)
  echo "$arch: wall per boot $w s; snapinit start->exec $e ms"
done
((${#notes[@]} == 0)) || printf 'note: %s\n' "${notes[@]}"
((keep)) && echo "artifacts kept in $work"
if ((failed)); then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
