# rollback: commit, commit, save, `snapshot rollback 1 --yes --no-reboot`: /etc equals the
# first snapshot's state, the volatile is dropped.
SCENARIO_MEDIA[rollback]='nor ubi'
scenario_rollback() {
  flash_new "$SDIR/flash.img" 2048
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'first\n' >/etc/state
printf 'only in the first\n' >/etc/first-only
snapshot commit --no-reboot
STEP
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
probe
printf 'second\n' >/etc/state
rm /etc/first-only
printf 'x\n' >/etc/second-only
snapshot commit --no-reboot
STEP
  vm boot3 "$SDIR/flash.img" <<'STEP' || return 1
probe
grep -qx second /etc/state
printf 'volatile after the second\n' >/etc/volatile-file
snapshot save
snapshot rollback 1 --yes --no-reboot
STEP
  check "boot3: two snapshots before the rollback" has boot3 info_boot '2 snapshot'
  vm boot4 "$SDIR/flash.img" <<'STEP' || return 1
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
