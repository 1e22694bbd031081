# roundtrip: `snapshot` inside the guest: format, edit /etc (changed file, new dir,
# symlink, deleted squashfs file), save -> reboot: /etc hash equal, changes and whiteout in
# /overlay/upper -> commit -> reboot: in /snapshot, upper empty; then the flash this guest
# wrote boots on the next architecture of the run with the same /etc hash.
SCENARIO_MEDIA[roundtrip]='nor ubi'
scenario_roundtrip() {
  flash_new "$SDIR/flash.img"
  vm boot1 "$SDIR/flash.img" <<'STEP' || return 1
snapshot format --yes
printf 'config system\n\toption hostname saved-in-the-guest\n' >/etc/config/system
mkdir -p /etc/newdir
printf 'new file\n' >/etc/newdir/newfile
ln -s ../hostname /etc/config/hostlink
rm /etc/rom-marker
emit_str want "$(dirhash /etc)"
snapshot save
STEP
  local want other
  want=$(get boot1 want)
  vm boot2 "$SDIR/flash.img" <<'STEP' || return 1
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
  vm boot3 "$SDIR/flash.img" <<'STEP' || return 1
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
  # The flash this guest wrote, on another architecture.
  other=$(other_arch)
  if [[ -z $other ]]; then
    summary "only one architecture in this run: the flash was not carried to another"
    return 0
  fi
  vm_on "$other" elsewhere "$SDIR/flash.img" <<'STEP' || return 1
emit_str etc_hash "$(dirhash /etc)"
STEP
  check "the flash written here boots on $other with the same /etc" is elsewhere etc_hash "$want"
}
