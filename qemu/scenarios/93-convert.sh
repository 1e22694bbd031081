# convert: a unit's OpenWrt JFFS2 overlay becomes a chain. The host writes a real JFFS2
# (mkfs.jffs2: little-endian, 64 KiB erase blocks, the whole NOR partition, its end free);
# boot1 (snapinit sees the JFFS2: a plain tmpfs overlay) mounts it with the kernel's jffs2
# driver read-write and runs `snapshot convert --from` it: the mount is made read-only first,
# the overlay is staged in the partition's free end, then becomes snapshot 1; boot2 replays
# it: /snapshot/etc is the JFFS2's /etc (tree hash) and its files show in /etc. boot3: a
# `format --force` over a JFFS2 mounted read-write makes it read-only first.
# x86_64 only: the other test kernels have no JFFS2 (qemu/*.config).
OPT_IN+=(convert)
scenario_convert() {
  local src=$SDIR/jffs2-src
  rm -rf "$src"
  mkdir -p "$src/etc/config"
  printf "config interface 'mesh'\n\toption proto 'static'\n" >"$src/etc/config/network"
  printf 'converted-from-jffs2\n' >"$src/etc/jffs2-marker"
  ln -s jffs2-marker "$src/etc/jffs2-link"
  mkfs.jffs2 -l -q -e 0x10000 --pad=0x200000 -r "$src" -o "$SDIR/flash.img" ||
    { fail "mkfs.jffs2 (mtd-utils)"; return 1; }
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
probe
mkdir -p /mnt/j
mount -t jffs2 /dev/mtdblock0 /mnt/j
emit_str jffs2_hash "$(dirhash /mnt/j/etc)"
snapshot convert --from /mnt/j --yes --no-reboot >/tmp/c 2>&1 || echo "convert: exit $?" >>/tmp/c
emit_lines convert_out </tmp/c
grep ' /mnt/j ' /proc/mounts >/tmp/m || true
emit_lines jffs2_mount </tmp/m
snapshot info >/tmp/i 2>&1 || true
emit_lines info_after </tmp/i
STEP
  check "boot1: snapinit saw the JFFS2 and booted a plain overlay" has boot1 dmesg_snapinit 'holds a JFFS2 filesystem'
  check "boot1: snapshot info says jffs2" has boot1 info_boot 'jffs2'
  check "boot1: the JFFS2 mounted and holds the files" lacks boot1 jffs2_hash '^absent$'
  check "boot1: convert staged the overlay in the free end first" has boot1 convert_out 'staged first'
  check "boot1: convert succeeded" has boot1 convert_out '^converted: '
  check "boot1: convert made the mounted JFFS2 read-only" has boot1 jffs2_mount ' jffs2 ro[, ]'
  check "boot1: snapshot info shows one snapshot" has boot1 info_after 'chain: 1 snapshot'
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
probe
emit_str snap_etc_hash "$(dirhash /snapshot/etc)"
cat /etc/jffs2-marker >/tmp/x 2>&1 || true
emit_lines marker </tmp/x
STEP
  check "boot2: snapinit replayed snapshot 1" has boot2 dmesg_snapinit 'restored snapshot 1 '
  check "boot2: /snapshot/etc is the JFFS2's /etc (tree hash)" is boot2 snap_etc_hash "$(get boot1 jffs2_hash)"
  check "boot2: the JFFS2's file shows in /etc" has boot2 marker '^converted-from-jffs2$'
  # format --force over the same JFFS2 mounted read-write: made read-only first (the driver
  # would go on writing into the erased blocks), and so it stays.
  mkfs.jffs2 -l -q -e 0x10000 --pad=0x200000 -r "$src" -o "$SDIR/flash2.img" ||
    { fail "mkfs.jffs2 (mtd-utils)"; return 1; }
  vm boot3 "$SDIR/flash2.img" <<'STEP' || return 1
probe
mkdir -p /mnt/j
mount -t jffs2 /dev/mtdblock0 /mnt/j
snapshot format --force --yes >/tmp/f 2>&1 || echo "format: exit $?" >>/tmp/f
emit_lines format_out </tmp/f
grep ' /mnt/j ' /proc/mounts >/tmp/m || true
emit_lines jffs2_mount </tmp/m
snapshot info >/tmp/i 2>&1 || true
emit_lines info_after </tmp/i
STEP
  check "boot3: format --force succeeded" has boot3 format_out '^formatted '
  check "boot3: format made the mounted JFFS2 read-only" has boot3 jffs2_mount ' jffs2 ro[, ]'
  check "boot3: snapshot info shows an empty chain" has boot3 info_after 'empty'
}
