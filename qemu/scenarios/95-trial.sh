# trial: trial boots heal a unit with no input (docs/FORMAT.md "Trial boots").
#  * a snapshot committed on trial whose health check fails: `snapshot health` fails on its
#    one boot, and the next boot is the previous state, logged as a trial rollback; the next
#    write makes it permanent;
#  * a good snapshot on trial: the health check confirms it; later boots spend nothing (the
#    flash image is byte-identical across a boot);
#  * a volatile saved on trial that breaks the ping check (a changed address) falls back to
#    the previous volatile;
#  * a snapshot whose boot hangs before any check: the watchdog snapinit armed resets the
#    board, and the next boot is rolled back.
# The health checks are the unit's own /etc/config/snapshot (committed in boot 1): the state
# file must say "good" and 10.9.9.9 (assigned on lo from /etc/lan-addr) must answer ping.
# On UBI (`--medium ubi`) every mark PID 1 spends is one atomic LEB change of the real
# kernel's UBI, cut by the power cuts around the trial mark like NOR's one-byte program; the
# host reads the marks out of the volume (ubi-volume.py).

# Brings lo up with the unit's configured address (what a network config would do).
TRIAL_NET='ip link set lo up; ip addr add "$(cat /etc/lan-addr)/32" dev lo 2>/dev/null || true'

trial_marks() { # IMAGE -> "used/budget confirmed" of every block, from the host's tool
  local vol=$1
  if [[ $MEDIUM != nor ]]; then # the volume's bytes, out of the UBI image
    vol=$SDIR/trial-marks.vol
    "$QEMU_DIR/ubi-volume.py" "$1" >"$vol" || return 1
  fi
  "$SNAPSHOT_HOST" --device "$vol" info --json 2>/dev/null |
    awk -F'[:,]' '/"trial_budget"/ {b=$2} /"trials_used"/ {u=$2} /"confirmed"/ {gsub(/ /,"",$2); printf "%s/%s:%s ", u+0, b+0, $2}'
}

SCENARIO_MEDIA[trial]='nor ubi'
scenario_trial() {
  local f=$SDIR/flash.img before after
  flash_new "$f" 2048
  vm t1 "$f" <<'STEP' || return 1
snapshot format --yes
mkdir -p /etc/config
cat >/etc/config/snapshot <<'EOF'
config health 'health'
	option deadline '60'
	option interval '2'
	list command 'grep -qx good /etc/state'
	list ping '10.9.9.9'
EOF
printf 'good\n' >/etc/state
printf '10.9.9.9\n' >/etc/lan-addr
snapshot commit --no-reboot
STEP

  # A bad snapshot on trial: one boot allowed.
  vm t2 "$f" <<STEP || return 1
$TRIAL_NET
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
printf 'bad\n' >/etc/state
snapshot commit --trial 1 --no-reboot
STEP
  check "t2: nothing on trial yet: health has nothing to do" is t2 health_rc 0
  vm t3 "$f" <<STEP || return 1
$TRIAL_NET
emit_str state "\$(cat /etc/state)"
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
snapshot info >/tmp/i 2>&1; emit_lines info </tmp/i
STEP
  check "t3: the trial snapshot boots (state bad)" is t3 state bad
  check "t3: snapinit spent its only trial boot" has t3 dmesg_snapinit 'snapshot 2 is on trial: boot 1 of 1'
  check "t3: snapinit armed the watchdog" has t3 dmesg_snapinit 'watchdog armed'
  check "t3: health fails (exit 17)" is t3 health_rc 17
  check "t3: the failed kind of check is marked on the block (the ping passes)" \
    has t3 info 'ON TRIAL: 1 of 1 boots spent, failed: command'
  vm t4 "$f" <<STEP || return 1
emit_str state "\$(cat /etc/state)"
snapshot info >/tmp/i 2>&1; emit_lines info </tmp/i
printf 'after the rollback\n' >/etc/note
snapshot save
snapshot info >/tmp/i 2>&1; emit_lines info_after </tmp/i
STEP
  check "t4: rolled back by itself to the good state" is t4 state good
  check "t4: snapinit says why" has t4 dmesg_snapinit 'on trial, every allowed boot spent without a confirmation'
  check "t4: info shows the trial rollback" has t4 info 'rolled back: snapshot'
  check "t4: the next write made it permanent" lacks t4 info_after 'rolled back'
  check "t4: and the chain is the good state alone" has t4 info_after '1 snapshot' 

  # A good snapshot on trial: confirmed by the health check, then boots spend nothing.
  vm t5 "$f" <<'STEP' || return 1
printf 'on\n' >/etc/feature
snapshot commit --trial 2 --no-reboot
STEP
  vm t6 "$f" <<STEP || return 1
$TRIAL_NET
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
STEP
  check "t6: boot 1 of 2 of the good snapshot" has t6 dmesg_snapinit 'is on trial: boot 1 of 2'
  check "t6: health passes and confirms" is t6 health_rc 0
  before=$(sha256sum <"$f")
  vm t7 "$f" <<'STEP' || return 1
emit_str feature "$(cat /etc/feature)"
STEP
  after=$(sha256sum <"$f")
  check "t7: the confirmed snapshot stays" is t7 feature on
  check "t7: a confirmed boot spends nothing" lacks t7 dmesg_snapinit 'is on trial'

  check "t7: the flash is byte-identical across the boot" test "$before" = "$after"

  # A volatile on trial that breaks the ping check: the previous volatile comes back.
  vm t8 "$f" <<'STEP' || return 1
printf 'unit-8\n' >/etc/unit-name
snapshot save
printf '10.9.9.8\n' >/etc/lan-addr
snapshot save --trial 1
STEP
  vm t9 "$f" <<STEP || return 1
$TRIAL_NET
emit_str addr "\$(cat /etc/lan-addr)"
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
STEP
  check "t9: the changed address boots" is t9 addr 10.9.9.8
  check "t9: the volatile spent its trial boot" \
    has t9 dmesg_snapinit 'saved changes above snapshot [0-9]+ is on trial: boot 1 of 1'
  check "t9: ping fails, health fails" is t9 health_rc 17
  vm t10 "$f" <<STEP || return 1
$TRIAL_NET
emit_str addr "\$(cat /etc/lan-addr)"
emit_str name "\$(cat /etc/unit-name)"
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
STEP
  check "t10: the previous configuration is back" is t10 addr 10.9.9.9
  check "t10: with the previous volatile's other change" is t10 name unit-8
  check "t10: nothing on trial any more" is t10 health_rc 0

  # A snapshot whose boot hangs before any check: the watchdog resets the board.
  vm t11 "$f" <<'STEP' || return 1
printf 'x\n' >/etc/hangs
snapshot commit --trial 1 --no-reboot
STEP
  vm t12 "$f" --append "snapinit.watchdog=8" --kill-after 200 <<'STEP' || return 1
emit_str hanging yes
while :; do sleep 60; done
STEP
  check "t12: the hanging boot spent the trial mark (host: 1 of 1 spent)" \
    grep -q '1/1:false' <<<"$(trial_marks "$f")"
  check "t12: the watchdog reset the board (QEMU exited before the kill)" \
    grep -q 'result=exited' "$SDIR/t12.boot.out"
  vm t13 "$f" <<'STEP' || return 1
test -e /etc/hangs && emit_str hangs present || emit_str hangs absent
STEP
  check "t13: rolled back after the watchdog reset" is t13 hangs absent
  check "t13: snapinit logged the trial rollback" has t13 dmesg_snapinit 'every allowed boot spent'

  # Power cuts right around the trial mark: SIGKILL at delays spread over the boot (before,
  # during and after snapinit). Each cut may spend a trial boot or not, never give one back,
  # never more than one.
  vm t14 "$f" <<'STEP' || return 1
rm -f /etc/hangs
printf 'cut\n' >/etc/cuts
snapshot commit --trial 9 --no-reboot
STEP
  local d used last=0 spent k=0
  for d in 0.8 1.5 2.2 3.0 4.0 6.0; do
    k=$((k + 1))
    vm "cut$k" "$f" --kill-after "$d" <<'STEP' || return 1
sleep 30
STEP
    used=$(trial_marks "$f" | grep -o '[0-9]*/9:false' | cut -d/ -f1)
    if [[ -z $used ]]; then
      fail "cut$k: the snapshot on trial is gone or confirmed after a cut ($(trial_marks "$f"))"
      return 1
    fi
    if ((used < last || used > last + 1)); then
      fail "cut$k (${d}s): trial boots spent went from $last to $used"
    else
      echo "  ok   [$CUR] cut$k (${d}s): trial boots spent $last -> $used"
    fi
    last=$used
  done
  spent=$last
  summary "trial: $k power cuts around the trial mark, $spent trial boot(s) spent by them"
  vm t15 "$f" <<STEP || return 1
$TRIAL_NET
emit_str cuts "\$(cat /etc/cuts)"
rc=0; snapshot health --once --no-reboot || rc=\$?; emit_str health_rc \$rc
STEP
  check "t15: the snapshot on trial survived the cuts" is t15 cuts cut
  check "t15: health confirms it" is t15 health_rc 0
  check "t15: confirmed on flash" grep -q ':true' <<<"$(trial_marks "$f" | awk '{print $NF}')"
  summary "trial: $(trial_marks "$f")"
}
