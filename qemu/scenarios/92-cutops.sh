# cutops: hard power cuts during commit, rollback and format (the powercut scenario cuts
# saves only). 16 MiB flash. Every boot first reports what it came up with (/data's hash and
# the number of snapshots), which the host compares with the states before and after the
# previous boot's operation; then it runs one operation, the first of the host's order
# (fewest cuts so far first) that the chain allows:
#   commit    (fewer than 4 snapshots) 2 MiB of new files in /data, then
#             `snapshot commit --no-compress`: appends a snapshot of 33 erase blocks
#   rollback  (at least 2) `snapshot rollback N-1`: drops the top snapshot, erases its blocks
#   format    (at least 1) `snapshot format --force`: drops the chain, erases what it used
# (a rollback or format the chain is too short for is preceded, in the same boot, by uncut
# commits that build it up). QEMU is SIGKILLed a delay after the guest announced the
# operation (boot.sh --kill-on start_OP, one delay per operation); the delays spread over
# 3-105 % of the operation's duration, measured in its first, uncut run and again in every
# run the cut missed (cuts past its end count as after it; a host whose load drops runs the
# guest faster than when it was measured). After each cut the next boot must show the old or the new state
# (exactly the new one if the guest had announced the operation's return), and its own
# writes, over whatever the cut left, must succeed. --op-cuts N (run-tests.sh, default 20):
# cuts that must land inside each of the three operations.
OC_KIB=2048
OC_MAX_SNAPS=4

# oc_step "OP..." : the step script of one boot; the guest takes the first allowed OP.
oc_step() {
  cat <<STEP
emit_str cur_hash "\$(dirhash /data)"
n=\$(snapshot info | sed -n 's/.*chain: \([0-9]*\) snapshot.*/\1/p')
n=\${n:-0}
emit_str nsnap "\$n"
new_data() { # 2 MiB of new files in /data, cheaply (urandom is slow under TCG): 64 KiB repeated
	rm -rf /data
	mkdir /data
	dd if=/dev/urandom of=/tmp/r bs=65536 count=1 2>/dev/null
	i=0
	while [ \$i -lt $((OC_KIB / 128)) ]; do cat /tmp/r; i=\$((i + 1)); done >/data/a
	cat /data/a /tmp/r >/data/b
}
# The first operation of the host's order that the chain allows (a commit needs room).
for o in $1; do
	case \$o in
		commit) [ \$n -lt $OC_MAX_SNAPS ] && break ;;
		*) break ;;
	esac
done
# A rollback needs 2 snapshots, a format 1: commits build the chain up first, in this boot
# and uncut (each also a write over what the last cut left, which must succeed).
b=0
while { [ \$o = rollback ] && [ \$n -lt 2 ]; } || { [ \$o = format ] && [ \$n -lt 1 ]; }; do
	new_data
	b=\$((b + 1))
	emit_str build_\$b "\$(dirhash /data)"
	rc=0
	# Two commits of the running upper dir in one boot: the tool refuses the second (the
	# boot record's chain-moved, docs/SNAPSHOT.md) since a file deleted in between would come
	# back. new_data rewrites the same two names, so nothing can here: no record for these.
	snapshot --boot-record /dev/null commit --no-compress --no-reboot >/tmp/op.out 2>&1 || rc=\$?
	if [ \$rc != 0 ]; then
		emit_str op_rc "\$rc (building commit \$b)"
		emit_lines op_out </tmp/op.out
		exit 1
	fi
	n=\$((n + 1))
done
emit_str builds "\$b"
emit_str op "\$o"
case \$o in
	commit)
		new_data
		emit_str new_hash "\$(dirhash /data)"
		cmd="snapshot commit --no-compress --no-reboot" ;;
	rollback) cmd="snapshot rollback \$((n - 1)) --yes --no-reboot" ;;
	format) cmd="snapshot format --force --yes" ;;
esac
sync
# Ticks on the console while the operation runs (builtins and a nofork sleep: light on the
# guest; not on the result port, which opens once at a time): the last one before a cut
# says how far into the operation it landed.
( while :; do read -r t _ </proc/uptime; echo "cutops-tick \$t" >/dev/console; sleep 0.1; done ) &
ticker=\$!
emit_str op_start "\$(up)"
emit_str start_\$o "\$(up)"
rc=0
\$cmd >/tmp/op.out 2>&1 || rc=\$?
emit_str op_done "\$(up)"
kill \$ticker 2>/dev/null || true
emit_str op_rc "\$rc"
emit_lines op_out </tmp/op.out
STEP
}

# oc_state STACK: "count top-hash" of a stack of /data hashes (one per snapshot, bottom first).
oc_state() {
  local -a s
  read -r -a s <<<"$1"
  if ((${#s[@]})); then echo "${#s[@]} ${s[${#s[@]} - 1]}"; else echo "0 absent"; fi
}

scenario_cutops() {
  local f=$SDIR/flash.img want=${OP_CUTS:-20} n=0 tag o d seen done_ rc order
  local stack='' old='' new='' boots=0 limit builds=0 k
  local -A cuts=([commit]=0 [rollback]=0 [format]=0) late=([commit]=0 [rollback]=0 [format]=0)
  local -A at=() dur=() shown_old=([commit]=0 [rollback]=0 [format]=0) shown_new=([commit]=0 [rollback]=0 [format]=0)
  # 3 x want cuts and about a third more that land after the end.
  limit=$((5 * want + 20))
  flash_new "$f" 16384
  vm boot0 "$f" --mem 256M --append agent.brief=1 <<'STEP' || return 1
snapshot format --yes
STEP
  old='' new='' # the states the next boot may show, as stacks; '' = the empty chain
  local pending=0 last='' last_op=''
  while :; do
    local need=0
    for o in commit rollback format; do ((cuts[$o] >= want)) || need=1; done
    # The order: operations short of cuts first, fewest first; the rest after.
    order=$(for o in rollback format commit; do echo "${cuts[$o]} $o"; done | sort -s -n -k1,1 | cut -d' ' -f2 | tr '\n' ' ')
    local kill=()
    local -A armed=()
    for o in commit rollback format; do
      [[ -n ${dur[$o]:-} ]] && ((cuts[$o] < want)) || continue
      armed[$o]=1
      # To the measured end and a little past it: a loaded host runs the guest slower than
      # in calibration.
      d=$(awk -v k="$((boots + 1))" -v t="${dur[$o]}" \
        'BEGIN{x = k * 0.6180339887; printf "%.2f", (0.03 + 1.02 * (x - int(x))) * t}')
      kill+=(--kill-on "start_$o" --kill-delay "$d")
    done
    if ((!need)); then
      tag=settle
      kill=() armed=()
    else
      boots=$((boots + 1))
      ((boots <= limit)) || { fail "still short of cuts after $limit boots"; return 1; }
      tag=b$boots
    fi
    vm "$tag" "$f" --mem 256M --append agent.brief=1 "${kill[@]}" < <(oc_step "$order") || return 1
    # What this boot came up with settles the previous operation: old or new.
    seen="$(get "$tag" nsnap) $(get "$tag" cur_hash)"
    if ((pending)) && [[ $seen == "$(oc_state "$old")" ]]; then
      stack=$old
      shown_old[$last_op]=$((shown_old[$last_op] + 1))
    elif [[ $seen == "$(oc_state "$new")" ]]; then
      stack=$new
      ((!pending)) || shown_new[$last_op]=$((shown_new[$last_op] + 1))
    else
      fail "$tag: came up with '$seen' after $last: want $( ((pending)) && echo "'$(oc_state "$old")' or ")'$(oc_state "$new")'"
      return 1
    fi
    o=$(get "$tag" op)
    [[ -n $o && -n $(get "$tag" op_start) ]] || { fail "$tag: the guest never started an operation"; return 1; }
    rc=$(get "$tag" op_rc || true)
    if [[ -n $rc && $rc != 0 ]]; then
      fail "$tag: $o over what the previous cut left exited $rc:"
      get "$tag" op_out | sed 's/^/      | /' | tail -n 15
      return 1
    fi
    done_=$(get "$tag" op_done || true)
    # The commits that built the chain up in this boot, before its operation.
    for ((k = 1; k <= $(get "$tag" builds || echo 0); k++)); do
      stack="${stack:+$stack }$(get "$tag" "build_$k")"
    done
    builds=$((builds + k - 1))
    old=$stack last_op=$o
    case $o in
      commit) new="${stack:+$stack }$(get "$tag" new_hash)" ;;
      rollback) new=${stack% *} ;;
      format) new='' ;;
    esac
    if [[ -n $done_ ]]; then
      pending=0
      if [[ -n ${armed[$o]:-} ]]; then
        late[$o]=$((late[$o] + 1))
        last="$tag ($o, cut after it returned)"
        # The host runs the guest faster than when the duration was measured (the load on
        # it changes): the delays follow this run's duration, so that the cuts land inside
        # again rather than the boots running out.
        dur[$o]=$(awk -v a="$(get "$tag" op_start)" -v b="$done_" 'BEGIN{printf "%.2f", b - a}')
      else
        last="$tag ($o, uncut)"
      fi
      [[ -n ${dur[$o]:-} ]] || {
        dur[$o]=$(awk -v a="$(get "$tag" op_start)" -v b="$done_" 'BEGIN{printf "%.2f", b - a}')
        note "calibration: $o took ${dur[$o]}s (guest uptime)"
      }
    else
      pending=1
      cuts[$o]=$((cuts[$o] + 1))
      last="$tag ($o, cut inside it)"
      # How far into the operation the cut landed: its last tick.
      at[$o]+=" $(awk -v a="$(get "$tag" op_start)" -v b="$(sed -n 's/.*cutops-tick \([0-9.]*\).*/\1/p' "$SDIR/$tag.log" | tail -n 1)" 'BEGIN{if (b == "") b = a; printf "%.1f", b - a}')"
    fi
    [[ $tag != settle ]] || break
  done
  vm final "$f" --mem 256M --append agent.brief=1 <<'STEP' || return 1
emit_str cur_hash "$(dirhash /data)"
n=$(snapshot info | sed -n 's/.*chain: \([0-9]*\) snapshot.*/\1/p')
emit_str nsnap "${n:-0}"
snapshot verify
STEP
  seen="$(get final nsnap) $(get final cur_hash)"
  check "final: the uncut $o after the last cut booted ($(oc_state "$new"))" \
    test "$seen" == "$(oc_state "$new")"
  summary "power cuts inside the operation: commit ${cuts[commit]}, rollback ${cuts[rollback]}, format ${cuts[format]} (the next boot showed the old state / the new one: ${shown_old[commit]}/${shown_new[commit]}, ${shown_old[rollback]}/${shown_new[rollback]}, ${shown_old[format]}/${shown_new[format]}; cuts after it returned: ${late[commit]}, ${late[rollback]}, ${late[format]}; $boots boots, $builds commits that built the chain up); each next boot showed the old or the new state and its own write succeeded; uncut durations commit ${dur[commit]:-?}s, rollback ${dur[rollback]:-?}s, format ${dur[format]:-?}s"
  for o in commit rollback format; do
    summary "$o: cuts landed $(tr ' ' '\n' <<<"${at[$o]:-}" | sed '/^$/d' | stats | sed 's/ boots)/ cuts)/') s into it (last tick, 0.1 s apart)"
  done
}
