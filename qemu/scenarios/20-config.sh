# config: /etc edits (changed file, new dir + file, symlink) + `snapshot save` survive a
# reboot in /overlay/upper (/snapshot empty); a deleted squashfs file (`rm /etc/rom-marker`
# + save) stays deleted (a whiteout in upper) while /rom still has it.
SCENARIO_MEDIA[config]='nor ubi'
scenario_config() {
  flash_new "$SDIR/flash.img" 2048
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
probe
snapshot format --yes
printf 'config system\n\toption hostname changed-by-test\n' >/etc/config/system
mkdir -p /etc/newdir
printf 'new file\n' >/etc/newdir/newfile
ln -s ../hostname /etc/config/hostlink
emit_str want_etc "$(dirhash /etc)"
snapshot save
STEP
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
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
  check "boot2: snapinit replayed the volatile" has boot2 dmesg_snapinit 'restored the saved changes'
  vm boot3 "$SDIR/flash.img" <<'STEP' || return 1
probe
test ! -e /etc/rom-marker
test -e /rom/etc/rom-marker
grep -q changed-by-test /etc/config/system
STEP
  check "boot3: /etc is as saved after the delete (tree hash)" is boot3 etc_hash "$(get boot2 want_etc)"
  check "boot3: /etc/rom-marker stays deleted (whiteout in upper)" has boot3 upper_list '^\./etc/rom-marker$'
  check "boot3: /snapshot is empty" empty boot3 snapshot_list
}
