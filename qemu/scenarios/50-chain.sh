# chain: ONE image written on the host by the host's `snapshot --device IMG --erase-size
# 65536` (format, commit, commit, save: 2 snapshots + a volatile; whiteouts of a snapshot-1
# file and of a squashfs file, an opaque directory hiding snapshot-1 children, a file
# changed by snapshot 2 and again by the volatile, a symlink), the same bytes on every
# architecture. UBI: the same commands write the volume's content to a plain file with
# --erase-size <LEB size>, and `ubinize` (qemu/mkflash.sh --ubi --volume-image) makes the
# flash. The guest state of 12 paths (present/absent/content) is exactly as written;
# /etc (every file's sha256, and the listing with modes, sizes, links) is identical on every
# architecture of the run (the first one to boot it is the reference); the boot leaves the
# image byte-identical (UBI: the volume's content; UBI formats the empty PEBs on attach).
SCENARIO_MEDIA[chain]='nor ubi'
CHAIN_IMG='' CHAIN_REF_ARCH='' CHAIN_ETC_REF='' CHAIN_TREE_REF=''
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

chain_image() { # once per run: $WORK/chain.img
  local d=$WORK/chain-src img=$WORK/chain.vol
  local S=("$SNAPSHOT_HOST" --device "$img" --erase-size "$ERASE_SIZE")
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
  mknod "$d/s2/etc/doomed" c 0 0     # whiteout of a snapshot-1 file
  mknod "$d/s2/etc/rom-marker" c 0 0 # whiteout of a squashfs file
  python3 -c 'import os,sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")' "$d/s2/etc/opq"
  printf 'one-vol\n' >"$d/vol/etc/s1-file"
  printf 'volatile\n' >"$d/vol/etc/vol-file"
  vol_new "$img" 2048
  "${S[@]}" format --yes &&
    "${S[@]}" commit --upper "$d/s1" --no-reboot &&
    "${S[@]}" commit --upper "$d/s2" --no-reboot &&
    "${S[@]}" save --upper "$d/vol" &&
    "${S[@]}" info &&
    flash_from_vol "$img" "$WORK/chain.img.tmp" 2048 &&
    mv "$WORK/chain.img.tmp" "$WORK/chain.img"
}
chain_etc_tree() { get "$1" tree | grep -E " '/etc(/|')"; }

scenario_chain() {
  if [[ ! -s $WORK/chain.img ]]; then
    chain_image >"$SDIR/host-snapshot.out" 2>&1 || {
      fail "host snapshot commands failed:"; sed 's/^/      | /' "$SDIR/host-snapshot.out"; return 1; }
  fi
  cp "$WORK/chain.img" "$SDIR/flash.img"
  vm boot1 "$SDIR/flash.img" <<STEP || return 1
state $chain_paths >/tmp/st
emit_lines state </tmp/st
emit_str etc_hash "\$(dirhash /etc)"
STEP
  check "2 snapshots and the volatile replayed" has boot1 dmesg_snapinit 'chain: Chain, 2 snapshot\(s\), 1 volatile'
  check "volatile in place" has boot1 dmesg_snapinit 'saved changes are in place \(newest copy\)'
  check "files present/absent/contents as written on the host" test "$(get boot1 state)" == "$chain_want"
  if [[ $(get boot1 state) != "$chain_want" ]]; then
    diff <(echo "$chain_want") <(get boot1 state) | sed 's/^/      | /'
  fi
  check "the boot did not write the chain ($MEDIUM_DEV)" same_volume "$WORK/chain.img" "$SDIR/flash.img"
  if [[ -z $CHAIN_REF_ARCH ]]; then
    CHAIN_ETC_REF=$(get boot1 etc_sha256) CHAIN_TREE_REF=$(chain_etc_tree boot1)
    check "/etc recorded as the reference for the other architectures" \
      test -n "$CHAIN_ETC_REF" -a -n "$CHAIN_TREE_REF"
    [[ -z $CHAIN_ETC_REF ]] || CHAIN_REF_ARCH=$ARCH
  else
    check "/etc file hashes identical to the $CHAIN_REF_ARCH boot of the same image" \
      test "$(get boot1 etc_sha256)" == "$CHAIN_ETC_REF"
    check "/etc listing (modes, sizes, links) identical to $CHAIN_REF_ARCH" \
      test "$(chain_etc_tree boot1)" == "$CHAIN_TREE_REF"
  fi
}
