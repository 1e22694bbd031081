# commit: `snapshot commit --no-reboot` moves a change and a deletion into /snapshot;
# /overlay/upper is empty after the reboot.
SCENARIO_MEDIA[commit]='nor ubi'
scenario_commit() {
  flash_new "$SDIR/flash.img" 2048
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'committed\n' >/etc/committed-file
printf 'config system\n\toption hostname committed\n' >/etc/config/system
rm /etc/banner
emit_str want_etc "$(dirhash /etc)"
snapshot commit --no-reboot
STEP
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
probe
STEP
  check "boot2: /etc is as committed (tree hash)" is boot2 etc_hash "$(get boot1 want_etc)"
  check "boot2: the change lives in /snapshot" has boot2 snapshot_list '^\./etc/committed-file$'
  check "boot2: the deletion lives in /snapshot" has boot2 snapshot_list '^\./etc/banner$'
  check "boot2: /overlay/upper is empty" empty boot2 upper_list
  check "boot2: snapinit replayed snapshot 1" has boot2 dmesg_snapinit 'restored snapshot 1 from'
  check "boot2: snapshot info lists 1 snapshot" has boot2 info_boot '1 snapshot'
}
