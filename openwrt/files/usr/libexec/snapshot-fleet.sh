#!/bin/sh
# The unit's side of the fleet (docs/FLEET.md), run by procd (/etc/init.d/snapshot-fleet,
# /etc/init.d/snapshot-health) or cron; busybox sh. Arguments after the mode go to snapshot.
#
#   snapshot-fleet.sh poll-loop POLL-ARGS...
#       `snapshot fleet poll POLL-ARGS` every FLEET_INTERVAL seconds (default 1800) plus a
#       random tenth of it, the first one after a random wait of up to FLEET_BACKOFF seconds
#       (so units started together do not poll together). No mirror (exit 25) or no broker
#       (26): the next poll comes after FLEET_BACKOFF seconds (default 60), doubling each time
#       up to FLEET_INTERVAL. A refusal (a bad signature, a stale manifest, ...) waits the
#       full interval: the mirror would serve the same. A poll that takes a bundle reboots
#       the unit (unless POLL-ARGS has --no-reboot); when that reboot fails (exit 12) the next
#       poll, FLEET_BACKOFF seconds later, reboots again. FLEET_LOOPS=N stops after N polls with
#       the last poll's exit status (tests).
#   snapshot-fleet.sh health HEALTH-ARGS...
#       `snapshot health --no-reboot HEALTH-ARGS` (confirms a boot on trial once its checks
#       pass), then, when FLEET_MQTT is set, `snapshot fleet publish --mqtt $FLEET_MQTT
#       $FLEET_PUBLISH_ARGS` so the broker learns the verdict at once (with --unit-id,
#       --channel, --mqtt-user and --mqtt-password-file from FLEET_UNIT_ID, FLEET_CHANNEL,
#       FLEET_MQTT_USER and FLEET_MQTT_PASSWORD_FILE when set: each one argument, where
#       FLEET_PUBLISH_ARGS is split into words), then, when the checks
#       failed (exit 17) or cannot be read on a boot on trial (18: a typo the trial itself may
#       have brought, which nothing else would ever end), `reboot` (it spends the next trial
#       boot, or rolls back). A report
#       that cannot be sent does not hold the reboot up for long (one try, 5 s).
#       FLEET_NO_REBOOT=1: exit 17 (18) instead of rebooting (tests).
#
# SNAPSHOT, FLEET_SLEEP, FLEET_REBOOT: the commands run for snapshot, sleep and reboot
# (default: those; tests put stubs there: busybox sh runs its own applets before PATH).

SNAPSHOT=${SNAPSHOT:-snapshot}
FLEET_SLEEP=${FLEET_SLEEP:-sleep}
FLEET_REBOOT=${FLEET_REBOOT:-reboot}

log() { echo "snapshot-fleet: $*" >&2; }

# Sets rnd to a random number in [0, $1]. ash's $RANDOM (OpenWrt's busybox has no od), drawn
# in this shell: a $(...) subshell would start from the same state every time.
random_upto() {
	rnd=0
	[ "$1" -gt 0 ] 2>/dev/null || return 0
	if [ -n "${RANDOM:-}" ]; then
		rnd=$(( ((RANDOM << 15) | RANDOM) % ($1 + 1) ))
	else
		r=$(od -An -N4 -tu4 /dev/urandom 2>/dev/null | tr -d ' ')
		rnd=$(( ${r:-0} % ($1 + 1) ))
	fi
}

# Prints $1 as whole seconds, at least $2; empty means $3, anything else is logged and $3.
seconds() {
	case $1 in
	'') echo "$3" ;;
	*[!0-9]*) log "not a number of seconds: '$1'; using $3" && echo "$3" ;;
	*) [ "$1" -ge "$2" ] && echo "$1" || echo "$2" ;;
	esac
}

poll_loop() {
	# Never a poll loop that spins: at least a minute between good polls, a second after a
	# failed one.
	interval=$(seconds "${FLEET_INTERVAL:-}" 60 1800)
	backoff=$(seconds "${FLEET_BACKOFF:-}" 1 60)
	[ "$backoff" -le "$interval" ] || backoff=$interval
	wait=$backoff
	loops=0
	random_upto "$backoff"
	pause=$rnd
	while :; do
		[ "$pause" -eq 0 ] || "$FLEET_SLEEP" "$pause"
		rc=0
		"$SNAPSHOT" fleet poll "$@" || rc=$?
		loops=$((loops + 1))
		case $rc in
		0)
			wait=$backoff
			random_upto $((interval / 10))
			pause=$((interval + rnd))
			;;
		12)
			# A bundle is on flash, unbooted: the next poll reboots into it (docs/FLEET.md
			# step 7), mirrors or not, so it comes after the short wait, not the interval.
			pause=$backoff
			log "poll: the reboot into the bundle failed (exit 12); next try in $pause s"
			;;
		25 | 26)
			pause=$wait
			log "poll: no mirror or no broker (exit $rc); next try in $pause s"
			wait=$((wait * 2))
			[ "$wait" -le "$interval" ] || wait=$interval
			;;
		*)
			wait=$backoff
			pause=$interval
			log "poll: exit $rc; next poll in $pause s"
			;;
		esac
		if [ -n "${FLEET_LOOPS:-}" ] && [ "$loops" -ge "$FLEET_LOOPS" ]; then
			return "$rc"
		fi
	done
}

health() {
	rc=0
	"$SNAPSHOT" health --no-reboot "$@" || rc=$?
	if [ -n "${FLEET_MQTT:-}" ]; then
		# The health check's arguments are spent: the positional parameters take these.
		set -- --mqtt "$FLEET_MQTT" --retries 0 --timeout 5
		[ -z "${FLEET_UNIT_ID:-}" ] || set -- "$@" --unit-id "$FLEET_UNIT_ID"
		[ -z "${FLEET_CHANNEL:-}" ] || set -- "$@" --channel "$FLEET_CHANNEL"
		[ -z "${FLEET_MQTT_USER:-}" ] ||
			set -- "$@" --mqtt-user "$FLEET_MQTT_USER" \
				--mqtt-password-file "${FLEET_MQTT_PASSWORD_FILE:-}"
		# shellcheck disable=SC2086 # FLEET_PUBLISH_ARGS is a list of words
		"$SNAPSHOT" fleet publish "$@" ${FLEET_PUBLISH_ARGS:-} ||
			log "the health verdict was not published"
	fi
	if { [ "$rc" -eq 17 ] || [ "$rc" -eq 18 ]; } && [ -z "${FLEET_NO_REBOOT:-}" ]; then
		log "health check failed (exit $rc): rebooting"
		"$FLEET_REBOOT"
	fi
	return "$rc"
}

mode=${1:-}
[ $# -eq 0 ] || shift
case $mode in
poll-loop) poll_loop "$@" ;;
health) health "$@" ;;
*)
	echo "usage: snapshot-fleet.sh poll-loop POLL-ARGS... | health HEALTH-ARGS..." >&2
	exit 2
	;;
esac
