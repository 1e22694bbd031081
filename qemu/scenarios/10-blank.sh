# blank: an erased (0xFF) flash. snapinit finds rootfs_data on /dev/mtd0, sees the empty
# chain and mounts a plain tmpfs overlay, logs its peak RSS, execs the target; `snapshot
# info` in the guest says empty; `snapshot format` leaves a valid empty chain; the next boot
# reads it (nothing replayed).
scenario_blank() {
  flash_new "$SDIR/flash.img" 2048
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
probe
snapshot format --yes
snapshot info >/tmp/i 2>&1
emit_lines info_after </tmp/i
STEP
  check "boot1: root is an overlay" has boot1 mounts ' / / .* - overlay '
  check "boot1: the upper layer is a tmpfs" has boot1 mounts ' /overlay .* - tmpfs '
  check "boot1: /proc/mtd names rootfs_data" has boot1 mtd '"rootfs_data"'
  check "boot1: snapinit found the chain on /dev/mtd0" \
    has boot1 dmesg_snapinit 'snapinit: chain on /dev/mtd0 \(rootfs_data\)'
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
