# powercut: power cuts during a multi-MiB save. 16 MiB flash (256 erase blocks; UBI: a
# volume of 256 LEBs on block2mtd over the same file-backed virtio disk, so a SIGKILL of
# QEMU is a power cut under UBI too), `format --backbuf-blocks 128` (an 8 MiB back buffer);
# each cut boot writes 6 MiB from /dev/urandom to /data,
# reports its hash, runs `snapshot save --no-compress` and idles 6 s after it returns. QEMU
# is SIGKILLed a delay after the guest announced the save (boot.sh --kill-on save_start),
# delays spread over the save's duration measured in a calibration boot, and the last one
# a second after the guest announced the save's return (--kill-on save_done).
# The next boot's /data must be the old or the new state, and exactly the new one when the
# save had returned before the kill. Needs >= 4 cuts inside the save and >= 1 after it
# returned (extra cuts are aimed there if timing moved them out); then an uncut save and a
# verifying boot. --cuts N (run-tests.sh) plans N cuts (default 6).
SCENARIO_MEDIA[powercut]='nor ubi'
PC_MIB=6
pc_step() {
  cat <<STEP
emit_str cur_hash "\$(dirhash /data)"
rm -rf /data
mkdir /data
i=1
while [ \$i -le $PC_MIB ]; do
	dd if=/dev/urandom of=/data/f\$i bs=65536 count=16 2>/dev/null
	i=\$((i + 1))
done
emit_str new_hash "\$(dirhash /data)"
sync
emit_str save_start "\$(up)"
snapshot save --no-compress
emit_str save_done "\$(up)"
# Idle after the save, so a kill can land once it has returned: the new state must survive.
sleep 6
STEP
}

# pc_cut KEY DELAY: one power cut DELAY seconds after the guest reported KEY (save_start or
# save_done), then a boot that shows what survived, compared with the states before and
# after the save.
pc_cut() {
  local key=$1 d=$2 tag done_ new h what
  n=$((n + 1))
  tag=cut$n
  vm "$tag" "$f" --mem 256M --kill-on "$key" --kill-delay "$d" < <(pc_step) || return 1
  new=$(get "$tag" new_hash || true) done_=$(get "$tag" save_done || true)
  if [[ -z $new ]]; then
    fail "$tag: the guest never reported its new data"
    return 1
  elif [[ -z $done_ ]]; then
    what="during the save"; mid=$((mid + 1))
  else
    what="after the save returned"; late=$((late + 1))
  fi
  note "$tag: QEMU SIGKILLed ${d}s after $key: $what"
  vm "$tag-check" "$f" --mem 256M <<'STEP' || return 1
emit_str cur_hash "$(dirhash /data)"
STEP
  h=$(get "$tag-check" cur_hash)
  if [[ -n $done_ && $h != "$new" ]]; then
    fail "$tag: the save returned before the cut, but /data hash $h is not its $new"
  elif [[ $h == "$old" ]]; then
    echo "  ok   [$CUR] $tag: booted the old state"; ok=$((ok + 1))
  elif [[ $h == "$new" ]]; then
    echo "  ok   [$CUR] $tag: booted the new state"; ok=$((ok + 1))
  else
    fail "$tag: booted /data hash $h: neither old $old nor new $new"
  fi
  old=$h
}

scenario_powercut() {
  local f=$SDIR/flash.img old h k n=0 ok=0 mid=0 late=0 dur cuts=${PC_CUTS:-6}
  # 256 erase blocks: 16 MiB on NOR; on UBI 16 MiB + the 4 PEBs UBI keeps, so that the
  # 128-block back buffer is at most half of the volume there too.
  flash_new "$f" "$(flash_kib 256)"
  # boot0: format with an 8 MiB back buffer (a volatile must fit in it), first save.
  vm boot0 "$f" --mem 256M < <(echo 'snapshot format --yes --backbuf-blocks 128'; pc_step) || return 1
  old=$(get boot0 new_hash)
  # calibration: a full, uncut save; its guest timing places the cuts.
  vm calib "$f" --mem 256M < <(pc_step) || return 1
  h=$(get calib cur_hash)
  [[ $h == "$old" ]] || { fail "calib: booted with /data hash $h, want $old"; return 1; }
  old=$(get calib new_hash)
  dur=$(awk -v a="$(get calib save_start)" -v b="$(get calib save_done)" 'BEGIN{printf "%.2f", b - a}')
  note "calibration: the $PC_MIB MiB save took ${dur}s (guest uptime)"
  # Cuts spread over the save, then one after it returned (the guest idles 6 s before
  # rebooting): the saved state must be durable without an orderly reboot.
  for ((k = 0; k < cuts - 1; k++)); do
    pc_cut save_start "$(awk -v s="$dur" -v k="$k" -v n="$cuts" 'BEGIN{printf "%.2f", (0.1 + 0.8 * k / (n - 2)) * s}')" || return 1
  done
  pc_cut save_done 1 || return 1
  # Too few cuts landed inside the save (timing jitter): aim at its middle again.
  for ((k = 0; k < 4 && mid < 4; k++)); do
    pc_cut save_start "$(awk -v s="$dur" -v e="$k" 'BEGIN{printf "%.2f", (0.2 + 0.15 * e) * s}')" || return 1
  done
  # The kill after save_done came too late (the guest had rebooted): once more, sooner.
  for ((k = 0; k < 4 && late == 0; k++)); do
    pc_cut save_done "$(awk -v t="$k" 'BEGIN{printf "%.2f", 0.5 - 0.1 * t}')" || return 1
  done
  # After all the cuts a save must still run to its end and boot.
  vm final "$f" --mem 256M < <(pc_step) || return 1
  check "final: booted the last cut's state" is final cur_hash "$old"
  vm verify "$f" --mem 256M <<'STEP' || return 1
emit_str cur_hash "$(dirhash /data)"
STEP
  check "verify: the final save's state booted" is verify cur_hash "$(get final new_hash)"
  summary "$ok of $n power cuts survived ($mid during the save, $late after it returned; save ${dur}s)"
  ((mid >= 4)) || fail "only $mid cuts landed during the save (need 4)"
  ((late >= 1)) || fail "no cut landed after a save had returned"
  ((ok == n)) || fail "$((n - ok)) cut(s) booted neither the old nor the new state"
}
