# fleet: two units with real kernels and block2mtd flash take the same signed bundle over a
# network link, and heal themselves from a broken one (docs/FLEET.md, issue 14).
#  * the host signs bundles (two keys, both required) and a channel, serves them with nginx
#    and runs mosquitto, both on 127.0.0.1 on free ports, started here and stopped at the end;
#  * each unit is a QEMU guest on user networking (boot.sh --net user): it is 10.0.2.15/24 and
#    reaches the host's loopback at 10.0.2.2, nothing else is addressed;
#  * both boot the same base chain (written on the host: the keys, the health checks, the
#    fleet helper openwrt/files/usr/libexec/snapshot-fleet.sh), poll the channel through the
#    helper's loop, write bundle v2 on trial and report (on trial) to the broker; the next
#    boot spends a trial boot, the helper's health mode confirms it and publishes the verdict;
#  * bundle v3 breaks the health check: both take it, fail, roll back by themselves, report
#    the rollback after a reboot that emptied their RAM state, and do not take v3 again;
#  * the host reads the fleet from the broker (`fleet status --mqtt --json`): both units on
#    v2's chain id, confirmed, both rolled v3 back because of the failed check (the verdict
#    the broker kept: the units lost it with their RAM); and both flash images hold the same chain:
#    the same chain id as the host's own application of v2, every snapshot's payload bytes
#    identical, every block confirmed.
# Opt-in (not in the default list of run-tests.sh, so not in scripts/test.sh):
#   qemu/run-tests.sh --arch x86_64 --scenario fleet@x86_64
OPT_IN+=(fleet)

fleet_port() { # a free TCP port on 127.0.0.1
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fleet_listening() { # PORT: waits up to 5 s for 127.0.0.1:PORT to accept
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

FLEET_PIDS=()
fleet_stop() {
  local p
  for p in "${FLEET_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  FLEET_PIDS=()
}

# The payload bytes of every snapshot of IMAGE, one SHA-256 line each, cut from the image file
# itself at the offsets and lengths the host's tool reports (after the 256-byte header); and
# its own hash of them, which must agree.
fleet_payloads() {
  local o l h
  "$SNAPSHOT_HOST" --device "$1" --erase-size 65536 info --json |
    python3 -c 'import json, sys
for b in json.load(sys.stdin)["snapshots"]:
    print(b["offset"], b["stored_size"], b["sha256"])' |
    while read -r o l h; do
      [[ $(tail -c +$((o + 256 + 1)) "$1" | head -c "$l" | sha256sum | cut -d' ' -f1) == "$h" ]] ||
        echo "payload at $o differs from its header"
      echo "$h"
    done
}

# Boots unit-1 and unit-2 at once (2 cores: the two TCG guests run side by side), each with
# its step $SDIR/<unit>-PHASE.step; unit-2's boot runs in a subshell, its lines shown after.
fleet_boots() { # PHASE
  local d=$SDIR rc=0 pid w
  vm "unit-2-$1" "$d/unit-2.img" --net user --append agent.brief=1 \
    <"$d/unit-2-$1.step" >"$d/unit-2-$1.vm.out" 2>&1 &
  pid=$!
  vm "unit-1-$1" "$d/unit-1.img" --net user --append agent.brief=1 <"$d/unit-1-$1.step" || rc=1
  wait "$pid" || rc=1
  cat "$d/unit-2-$1.vm.out"
  grep -q FAIL "$d/unit-2-$1.vm.out" && CUR_FAIL=1
  # The subshell's boot statistics, recorded here.
  w=$(tail -n 1 "$d/unit-2-$1.boot.out" 2>/dev/null)
  [[ $w != *wall=* ]] || WALLS+=("$ARCH ${w##*wall=}")
  record_boot "$ARCH" "unit-2-$1"
  return $rc
}

# Step lines for unit $u (with $mirror and $broker of fleet_run): one run of the poll loop,
# its output and exit status under KEY and KEY_rc.
fleet_poll_step() { # KEY
  cat <<STEP
rc=0
FLEET_LOOPS=1 FLEET_BACKOFF=0 /usr/libexec/snapshot-fleet.sh poll-loop --mirror $mirror \\
  --channel stable --min-sigs 2 --unit-id $u --mqtt $broker --no-reboot --timeout 10 \\
  >/tmp/poll 2>&1 || rc=\$?
emit_lines $1 </tmp/poll
emit_str $1_rc \$rc
STEP
}
# The health helper (publishing its verdict, not rebooting) under health and health_rc.
fleet_health_step() { # [--once]
  cat <<STEP
rc=0
FLEET_MQTT=$broker FLEET_PUBLISH_ARGS="--unit-id $u" FLEET_NO_REBOOT=1 \\
  /usr/libexec/snapshot-fleet.sh health${1:+ $1} >/tmp/health 2>&1 || rc=\$?
emit_lines health </tmp/health
emit_str health_rc \$rc
STEP
}
# The unit's own `fleet status --json` under KEY.
fleet_status_step() { # KEY
  cat <<STEP
snapshot fleet status --json --unit-id $u >/tmp/st 2>&1
emit_json $1 "\$(cat /tmp/st)"
STEP
}

scenario_fleet() {
  local rc=0
  fleet_run || rc=1
  fleet_stop
  return $rc
}

fleet_run() {
  local d=$SDIR S=("$SNAPSHOT_HOST" --erase-size 65536) http mqtt k fp u t0 t1
  for k in /usr/sbin/nginx /usr/sbin/mosquitto; do
    [[ -x $k ]] || { fail "$k missing (scripts/deps.sh installs nginx-light and mosquitto)"; return 1; }
  done
  t0=$(now)
  http=$(fleet_port) mqtt=$(fleet_port)

  # Keys and the base firmware's configuration: both keys trusted, both signatures required;
  # the health check wants the mirror and a mesh that is not broken.
  mkdir -p "$d/base/etc/snapshot/keys.d" "$d/base/etc/config" "$d/base/usr/libexec" "$d/mirror"
  for k in a b; do
    "${S[@]}" bundle keygen "$d/key-$k" >/dev/null || { fail "keygen"; return 1; }
    fp=$("${S[@]}" bundle fingerprint "$d/key-$k.pub")
    cp "$d/key-$k.pub" "$d/base/etc/snapshot/keys.d/$fp"
  done
  cat >"$d/base/etc/config/snapshot" <<EOF
config health 'health'
	option deadline '60'
	option interval '2'
	list command 'wget -q -O /dev/null http://10.0.2.2:$http/stable.json'
	list command 'test ! -e /etc/mesh-broken'
EOF
  echo v1 >"$d/base/etc/fleet-release"
  install -m 0755 "$QEMU_DIR/../openwrt/files/usr/libexec/snapshot-fleet.sh" "$d/base/usr/libexec/"
  flash_new "$d/base.img" 2048
  "${S[@]}" --device "$d/base.img" format --yes >/dev/null &&
    "${S[@]}" --device "$d/base.img" commit --upper "$d/base" --no-reboot >/dev/null ||
    { fail "host: the base image"; return 1; }

  # The bundle: a new release, a changed config, 64 KiB of new (incompressible) files.
  mkdir -p "$d/v2/etc/config" "$d/v2/usr/lib/mesh"
  echo v2 >"$d/v2/etc/fleet-release"
  printf 'config interface lan\n\toption proto static\n' >"$d/v2/etc/config/network"
  head -c 65536 /dev/urandom >"$d/v2/usr/lib/mesh/part.bin"
  "${S[@]}" bundle create --base "$d/base.img" --upper "$d/v2" -o "$d/mirror/bundles/v2" \
    --bundle-version v2 --note "fleet scenario" --trial 2 >/dev/null &&
    "${S[@]}" bundle channel --root "$d/mirror" --channel stable --priority 0 bundles/v2 >/dev/null ||
    { fail "host: the bundle and channel"; return 1; }
  for k in a b; do
    "${S[@]}" bundle sign --key "$d/key-$k.sec" "$d/mirror/bundles/v2" >/dev/null &&
      "${S[@]}" bundle sign --key "$d/key-$k.sec" "$d/mirror/stable.json" >/dev/null ||
      { fail "host: signing"; return 1; }
  done
  # What the units must end on: the host applies the same bundle to a copy of the base.
  cp "$d/base.img" "$d/ref.img"
  "${S[@]}" --device "$d/ref.img" fleet apply "$d/mirror/bundles/v2" \
    --keys "$d/base/etc/snapshot/keys.d" --min-sigs 2 --no-reboot >/dev/null ||
    { fail "host: fleet apply on the reference image"; return 1; }
  local base_id want
  base_id=$("${S[@]}" --device "$d/base.img" bundle head)
  want=$("${S[@]}" --device "$d/ref.img" bundle head)
  # The checks below compare the units' heads with these: empty ones would match a unit's
  # empty answer.
  [[ -n $base_id && -n $want && $base_id != "$want" ]] ||
    { fail "host: bundle head gave '$base_id' and '$want'"; return 1; }

  # The servers, on loopback only.
  mkdir -p "$d/nginx/logs" "$d/mosquitto"
  cat >"$d/nginx/nginx.conf" <<EOF
user root; worker_processes 1; error_log $d/nginx/logs/error.log; pid $d/nginx/nginx.pid;
events { worker_connections 64; }
http { access_log $d/nginx/logs/access.log; client_body_temp_path $d/nginx/cb;
  proxy_temp_path $d/nginx/px; fastcgi_temp_path $d/nginx/fc; uwsgi_temp_path $d/nginx/uw;
  scgi_temp_path $d/nginx/sc; default_type application/octet-stream;
  server { listen 127.0.0.1:$http; root $d/mirror; } }
EOF
  /usr/sbin/nginx -p "$d/nginx" -c "$d/nginx/nginx.conf" -g 'daemon off;' </dev/null \
    >/dev/null 2>&1 &
  FLEET_PIDS+=($!)
  cat >"$d/mosquitto/mosquitto.conf" <<EOF
user root
listener $mqtt 127.0.0.1
allow_anonymous true
persistence false
log_dest file $d/mosquitto/mosquitto.log
EOF
  /usr/sbin/mosquitto -c "$d/mosquitto/mosquitto.conf" </dev/null >/dev/null 2>&1 &
  FLEET_PIDS+=($!)
  fleet_listening "$http" || { fail "nginx does not listen on 127.0.0.1:$http"; return 1; }
  fleet_listening "$mqtt" || { fail "mosquitto does not listen on 127.0.0.1:$mqtt"; return 1; }
  t1=$(now)
  note "host: keys, base image, bundle, servers in $(secs "$t0" "$t1") s"

  # The units' steps. The clock is set from the host's (what NTP does on a router: the
  # channel's rollout and expiry are judged by it); eth0 gets its address.
  local net="date -s @$(date +%s) >/dev/null; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0"
  local mirror="http://10.0.2.2:$http" broker="10.0.2.2:$mqtt"
  for u in unit-1 unit-2; do
    cp "$d/base.img" "$d/$u.img"
    # Boot 1: the poll loop, once: channel, bundle, trial write, report.
    cat >"$d/$u-poll.step" <<STEP
$net
emit_str head_before "\$(snapshot bundle head)"
$(fleet_poll_step poll)
emit_str head_after "\$(snapshot bundle head)"
STEP
    # Boot 2: the bundle on trial; the health check confirms it and the verdict is published;
    # the next poll finds nothing new.
    cat >"$d/$u-health.step" <<STEP
$net
emit_str release "\$(cat /etc/fleet-release)"
$(fleet_health_step)
# The poll loop of this boot: up to date; it learns the version the unit runs (the state
# directory is RAM: the reboot emptied it) and reports it.
$(fleet_poll_step poll2)
$(fleet_status_step unit_status)
STEP
  done

  fleet_boots poll || return 1
  for u in unit-1 unit-2; do
    check "$u: booted the base chain" is "$u-poll" head_before "$base_id"
    check "$u: the poll took the bundle (exit 0)" is "$u-poll" poll_rc 0
    check "$u: bundle v2 written on trial" has "$u-poll" poll 'bundle v2 applied as snapshot 2 .* on trial for 2 boot'
    check "$u: the status reached the broker" has "$u-poll" poll "published the status of unit $u"
    check "$u: the chain id is the bundle's" is "$u-poll" head_after "$want"
  done
  fleet_boots health || return 1
  for u in unit-1 unit-2; do
    check "$u: runs the bundle" is "$u-health" release v2
    check "$u: snapinit spent trial boot 1 of 2" has "$u-health" dmesg_snapinit 'snapshot 2 is on trial: boot 1 of 2'
    check "$u: health passed (exit 0)" is "$u-health" health_rc 0
    check "$u: the verdict was published" has "$u-health" health "published the status of unit $u"
    check "$u: the next poll: up to date" has "$u-health" poll2 'up to date'
    check "$u: its own status: confirmed, on the bundle's chain, version v2" \
      python3 -c 'import json, sys
s = json.loads(sys.argv[1])["status"]
assert s["chainId"] == sys.argv[2] and s["onTrial"] is False and s["version"] == "v2", s
assert s["lastHealth"]["ok"] is True, s
assert s["boot"] == {"notRun": None, "chainMoved": False}, s' "$(get "$u-health" unit_status)" "$want"
  done

  # Bundle v3 on top of v2 breaks the mesh (the health check fails): published with a new
  # channel manifest. Both units take it, fail the check on its one trial boot, and roll back
  # by themselves. Every reboot empties the RAM state directory: the boot after the rollback
  # finds it on flash, reports it, and the poll does not take v3 again.
  mkdir -p "$d/v3/etc"
  echo v3 >"$d/v3/etc/fleet-release"
  echo 'the new channel plan cut the mesh' >"$d/v3/etc/mesh-broken"
  "${S[@]}" bundle create --base-hash "$want" --upper "$d/v3" -o "$d/mirror/bundles/v3" \
    --bundle-version v3 --trial 1 >/dev/null &&
    "${S[@]}" bundle channel --root "$d/mirror" --channel stable --priority 0 \
      --published $(($(date +%s) + 1)) bundles/v2 bundles/v3 >/dev/null ||
    { fail "host: bundle v3 and the new channel"; return 1; }
  for k in a b; do
    "${S[@]}" bundle sign --key "$d/key-$k.sec" "$d/mirror/bundles/v3" >/dev/null &&
      "${S[@]}" bundle sign --key "$d/key-$k.sec" "$d/mirror/stable.json" >/dev/null ||
      { fail "host: signing v3"; return 1; }
  done
  sleep 1 # the guest clocks, set from the host's below, are past the new publication
  net="date -s @$(date +%s) >/dev/null; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0"
  for u in unit-1 unit-2; do
    cat >"$d/$u-poll3.step" <<STEP
$net
$(fleet_poll_step poll)
STEP
    # One round of checks (--once): it fails; the agent's reboot stands for the helper's.
    cat >"$d/$u-fail.step" <<STEP
$net
$(fleet_health_step --once)
STEP
    # The boot after: rolled back. The health service (nothing on trial) reports, then a poll.
    cat >"$d/$u-back.step" <<STEP
$net
emit_str release "\$(cat /etc/fleet-release)"
$(fleet_health_step)
$(fleet_status_step status_before_poll)
$(fleet_poll_step poll)
$(fleet_status_step unit_status)
STEP
  done
  fleet_boots poll3 || return 1
  for u in unit-1 unit-2; do
    check "$u: takes v3 on trial for 1 boot" has "$u-poll3" poll 'bundle v3 applied as snapshot 3 .* on trial for 1 boot'
  done
  fleet_boots fail || return 1
  for u in unit-1 unit-2; do
    check "$u: v3's one trial boot" has "$u-fail" dmesg_snapinit 'snapshot 3 is on trial: boot 1 of 1'
    check "$u: v3 fails the health check (exit 17)" is "$u-fail" health_rc 17
    check "$u: the failure was published before the reboot" has "$u-fail" health "published the status of unit $u"
  done
  fleet_boots back || return 1
  for u in unit-1 unit-2; do
    check "$u: rolled back by itself" has "$u-back" dmesg_snapinit 'every allowed boot spent'
    check "$u: runs v2 again" is "$u-back" release v2
    check "$u: the rollback and its failed check are found on flash after the reboot (RAM state gone)" \
      python3 -c 'import json, sys
r = json.loads(sys.argv[1])["status"]["lastRollback"]
assert r["snapshot"] == 3 and r["reason"] == "healthCheckFailed", r
assert r["detail"] == "failed on a trial boot: command (from the block'"'"'s marks on flash)", r' "$(get "$u-back" status_before_poll)"
    check "$u: the poll does not take v3 again" has "$u-back" poll 'not taking bundle v3 again: it rolled back on this unit \(healthCheckFailed'
    check "$u: status: v2's chain, confirmed, the rollback named v3" \
      python3 -c 'import json, sys
s = json.loads(sys.argv[1])["status"]
assert s["chainId"] == sys.argv[2] and s["onTrial"] is False and s["version"] == "v2", s
assert s["lastRollback"]["version"] == "v3", s' "$(get "$u-back" unit_status)" "$want"
  done

  # The fleet, from the broker.
  local rep
  rep=$("${S[@]}" fleet status --mqtt "127.0.0.1:$mqtt" --json --retries 0 2>"$d/status.err")
  printf '%s\n' "$rep" >"$d/fleet.json"
  check "host: fleet status --mqtt: both units on v2's chain, none on trial, both rolled v3 back (the failed check, kept by the broker)" \
    python3 -c 'import json, sys
st = json.loads(sys.argv[1])["status"]
assert st["units"] == 2, st
assert [(c["chainId"], c["version"], sorted(c["units"])) for c in st["chains"]] == [(sys.argv[2], "v2", ["unit-1", "unit-2"])], st
assert st["onTrial"] == [], st
assert sorted((r["unit"], r["version"], r["reason"]) for r in st["rolledBack"]) == [("unit-1", "v3", "healthCheckFailed"), ("unit-2", "v3", "healthCheckFailed")], st
assert all("test ! -e /etc/mesh-broken" in r["detail"] for r in st["rolledBack"]), st' "$rep" "$want"

  # Both flash images hold the same chain: the host's application of the bundle, payload by
  # payload; every block confirmed.
  local p1 p2 pr
  p1=$(fleet_payloads "$d/unit-1.img") p2=$(fleet_payloads "$d/unit-2.img") pr=$(fleet_payloads "$d/ref.img")
  check "images: both units hold 2 snapshots" test "$(wc -l <<<"$p1")" = 2
  check "images: byte-identical payloads on both units and the reference" \
    test "$p1" = "$p2" -a "$p1" = "$pr"
  for u in unit-1 unit-2; do
    check "images: $u's chain id is the bundle's" test "$("${S[@]}" --device "$d/$u.img" bundle head)" = "$want"
    check "images: every block of $u confirmed" \
      python3 -c 'import json, sys
bl = json.load(sys.stdin)["snapshots"]
assert len(bl) == 2 and all(b["confirmed"] for b in bl), bl' \
      < <("${S[@]}" --device "$d/$u.img" info --json)
  done

  # Sizes: what each unit fetched against the whole-image upgrade it replaces.
  local bsize fetched whole
  bsize=$(cat "$d/mirror/bundles/v2/"* | wc -c)
  fetched=$(awk '{s += $10} END {print s}' "$d/nginx/logs/access.log")
  whole=$(($(stat -c %s "${ROOTFS[$ARCH]}") + $(stat -c %s "${KERNEL[$ARCH]}")))
  summary "fleet: 2 units, 10 boots (2 at a time); bundle $bsize bytes (payload $(stat -c %s "$d/mirror/bundles/v2/payload.tar.gz")); nginx sent $fetched bytes to both; a whole image (kernel + squashfs) is $whole bytes"
  summary "fleet: $(wc -l <"$d/nginx/logs/access.log") HTTP requests; scenario $(secs "$t0" "$(now)") s"
}
