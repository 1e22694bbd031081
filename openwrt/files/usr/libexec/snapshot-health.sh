#!/bin/sh
# The health check for systems without procd: call this from the last boot script
# (e.g. /etc/init.d/S99snapshot-health, or an inittab `::once:` line). It returns at once; in
# the background `snapshot health` confirms the boot on trial once its checks pass (see
# /etc/config/snapshot), or the unit reboots. As /etc/init.d/snapshot-health does on OpenWrt,
# the verdict is published first when /etc/snapshot/fleet.env names a broker:
#
#   FLEET_MQTT=broker.mesh:1883
#   FLEET_PUBLISH_ARGS="--unit-id u7 --mqtt-user u7 --mqtt-password-file /etc/snapshot/mqtt.pass"
#
# FLEET_ENV, FLEET_HELPER, FLEET_LOG: that file, snapshot-fleet.sh and where the output goes
# (default /dev/console); SNAPSHOT: the snapshot command (tests put stubs there).
command -v "${SNAPSHOT:-snapshot}" >/dev/null 2>&1 || exit 0
env=${FLEET_ENV:-/etc/snapshot/fleet.env}
if [ -r "$env" ]; then
	# shellcheck disable=SC1090 # the unit's own settings, root's file
	. "$env"
	export FLEET_MQTT FLEET_PUBLISH_ARGS
fi
"${FLEET_HELPER:-/usr/libexec/snapshot-fleet.sh}" health </dev/null >>"${FLEET_LOG:-/dev/console}" 2>&1 &
