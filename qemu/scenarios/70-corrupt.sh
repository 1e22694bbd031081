# corrupt: a host-built chain (snapshot 1, snapshot 2, volatile) boots whole; a byte
# flipped in the middle of snapshot 2's payload -> only snapshot 1 is replayed, no
# volatile, the log names the block and why, `snapshot info` reports it.
scenario_corrupt() {
  local f=$SDIR/flash.img d
  flash_new "$f" 2048
  for d in s1 s2 vol; do
    mkdir -p "$SDIR/$d/etc"
    printf '%s\n' "$d" >"$SDIR/$d/etc/from-$d"
    head -c 20000 /dev/urandom | base64 >"$SDIR/$d/etc/pad-$d"
  done
  local S=("$SNAPSHOT_HOST" --device "$f" --erase-size 65536)
  {
    "${S[@]}" format --yes &&
      "${S[@]}" commit --upper "$SDIR/s1" --no-reboot &&
      "${S[@]}" commit --upper "$SDIR/s2" --no-reboot &&
      "${S[@]}" save --upper "$SDIR/vol" &&
      "${S[@]}" info --json >"$SDIR/info.json"
  } >"$SDIR/host-snapshot.out" 2>&1 || {
    fail "host snapshot commands failed:"; sed 's/^/      | /' "$SDIR/host-snapshot.out"; return 1
  }
  vm boot1 "$f" <<'STEP' || return 1
probe
test -e /etc/from-s1 && test -e /etc/from-s2 && test -e /etc/from-vol
STEP
  check "boot1 (intact): 2 snapshots and the volatile replayed" \
    has boot1 dmesg_snapinit 'chain: Chain, 2 snapshot\(s\), 1 volatile'
  local off len pos
  read -r off len < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["snapshots"][1]; print(s["offset"], s["stored_size"])' "$SDIR/info.json")
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
  # The walk reads headers only (each payload is hashed as it replays): all three blocks are
  # found, snapshot 2 is discarded when its hash fails, the volatile above it is not applied.
  check "boot2: snapshot 2 discarded as it replayed (offset $(printf '%#x' "$off"))" \
    has boot2 dmesg_snapinit "snapshot 2 at $(printf '%#x' "$off"): payload SHA-256 mismatch: discarded"
  check "boot2: only snapshot 1 kept" has boot2 dmesg_snapinit 'snapshot chain ends at #1'
  check "boot2: the volatile above it not applied" \
    has boot2 dmesg_snapinit 'the volatile belongs to the full chain: not applying it'
  check "boot2: snapshot info reports the damage" has boot2 info_boot '(reject|corrupt|bad|mismatch|fail)'
  get boot2 dmesg_snapinit | grep -E 'chain|mismatch|volatile' | sed 's/^/      | /'
}
