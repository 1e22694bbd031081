# blank: an erased (0xFF) flash (UBI: an empty rootfs_data volume). snapinit finds
# rootfs_data on /dev/mtd0 (UBI: /dev/ubiX_Y), sees the empty chain and mounts a plain tmpfs
# overlay, logs its peak RSS, execs the target; `snapshot info` in the guest says empty (UBI:
# and names the medium UBI with the LEB size the kernel reports); `snapshot format` leaves a
# valid empty chain; the next boot reads it (nothing replayed).
SCENARIO_MEDIA[blank]='nor ubi'
scenario_blank() {
  flash_new "$SDIR/flash.img" 2048
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
probe
emit_str leb_size "$(cat /sys/class/ubi/ubi0/eraseblock_size 2>/dev/null || echo none)"
snapshot format --yes
snapshot info >/tmp/i 2>&1
emit_lines info_after </tmp/i
STEP
  check "boot1: root is an overlay" has boot1 mounts ' / / .* - overlay '
  check "boot1: the upper layer is a tmpfs" has boot1 mounts ' /overlay .* - tmpfs '
  check "boot1: the flash has a partition/volume rootfs_data ($MEDIUM)" has_partition boot1
  check "boot1: snapinit found the chain on $MEDIUM_DEV" has boot1 dmesg_snapinit "$MEDIUM_CHAIN_RE"
  if [[ $MEDIUM == ubi ]]; then
    # x86_64's kernel has gluebi: the volume is in /proc/mtd too, and snapinit (the check
    # above) and the tool (below) must take /dev/ubiX_Y over that MTD view; the other
    # kernels have no gluebi (qemu/*.config), so no such entry
    if [[ $ARCH == x86_64 ]]; then
      check "boot1: gluebi lists rootfs_data in /proc/mtd too" has boot1 mtd '"rootfs_data"'
    else
      check "boot1: no gluebi entry for rootfs_data in /proc/mtd" lacks boot1 mtd '"rootfs_data"'
    fi
    check "boot1: the kernel's LEB size is mkflash.sh's ($ERASE_SIZE)" is boot1 leb_size "$ERASE_SIZE"
    check "boot1: snapshot info names the medium UBI" has boot1 info_boot '^medium: .*UBI'
    check "boot1: snapshot info gives the LEB size $ERASE_SIZE" has boot1 info_boot "(^|[^0-9])$ERASE_SIZE([^0-9]|$)"
  fi
  check "boot1: snapinit saw the empty chain" has boot1 dmesg_snapinit 'snapinit: chain: Empty'
  check "boot1: snapinit says: plain tmpfs overlay" has boot1 dmesg_snapinit 'plain tmpfs overlay'
  check "boot1: snapinit logged its peak RSS" has boot1 dmesg_snapinit 'snapinit: peak RSS [0-9]+ kB'
  check "boot1: snapinit exec'd the agent" has boot1 dmesg_snapinit 'snapinit: exec /sbin/test-agent'
  check "boot1: upper and snapshot layers empty" eval 'empty boot1 upper_list && empty boot1 snapshot_list'
  check "boot1: snapshot info (guest) sees an empty partition" has boot1 info_boot '^status: +empty'
  check "boot1: snapshot format left a valid (empty) chain" has boot1 info_after '^status: +(empty|chain)'
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
probe
STEP
  check "boot2: boots on the empty chain (chain read, nothing replayed)" \
    has boot2 dmesg_snapinit 'snapinit: chain: (Empty|Chain), 0 snapshot'
  check "boot2: root is an overlay" has boot2 mounts ' / / .* - overlay '
  check "boot2: snapshot info: empty chain" has boot2 info_boot '^status: +(empty|chain: 0 snapshot)'
}
