#!/bin/sh
# snapinit QEMU guest test agent (busybox sh). Installed as /sbin/test-agent.
#
# Runs as PID 1 (init=/sbin/test-agent), as the program snapinit execs, or
# from busybox init's rcS (agent.run=1). It:
#   1. mounts /proc, /sys, /dev (devtmpfs), /tmp (tmpfs) unless already mounted;
#   2. finds the "step script" disk: a virtio disk whose first line is
#      "# snapinit-agent-script" (qemu/boot.sh --script FILE makes it);
#   3. runs the script with busybox sh (sourced in a subshell, so it can call
#      emit_str / emit_lines / emit_json below) and captures its output;
#   4. writes JSON lines {"key":K,"value":V} to the virtio-serial port named
#      "result" (host file given to boot.sh --result);
#   5. sync; reboot -f (QEMU runs with -no-reboot, so it exits).
# Kernel cmdline knobs: agent.noreboot=1 -> start a shell instead of rebooting;
# agent.brief=1 -> skip the tree and /etc hashes (seconds under TCG; for scenarios of many
# boots whose steps emit what they check).
# Everything is best effort: a failing probe never stops the report.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

klog() {
	echo "test-agent: $*" >/dev/kmsg 2>/dev/null || echo "test-agent: $*" >&2
}

is_mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }

[ -e /proc/self ] || mount -t proc proc /proc
is_mounted /sys || mount -t sysfs sysfs /sys
is_mounted /dev || mount -t devtmpfs devtmpfs /dev
is_mounted /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp 2>/dev/null ||
	mount -t tmpfs tmpfs /mnt

work=/tmp/.test-agent
mkdir -p "$work" 2>/dev/null || work=/mnt
klog "start pid=$$ uptime=$(cut -d' ' -f1 /proc/uptime)"

# --- result channel ----------------------------------------------------------
RESULT_PORT=/dev/null
for d in /sys/class/virtio-ports/*; do
	[ -r "$d/name" ] || continue
	if [ "$(cat "$d/name")" = result ]; then
		RESULT_PORT=/dev/${d##*/}
	fi
done
[ "$RESULT_PORT" != /dev/null ] || klog "no virtio-serial port named 'result'"
export RESULT_PORT

# --- JSON helpers (also usable from step scripts) ----------------------------
json_escape() { # stdin lines -> escaped lines
	tr -d '\000-\010\013\014\016-\037' |
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' -e 's/\r/\\r/g'
}
json_array() { # stdin lines -> ["l1","l2",...]
	json_escape | awk 'BEGIN{printf "["} {printf "%s\"%s\"", (NR>1?",":""), $0} END{printf "]"}'
}
json_string() { # $1 -> "escaped" (newlines become \n)
	printf '%s\n' "$1" | json_escape |
		awk 'BEGIN{printf "\""} {printf "%s%s", (NR>1?"\\n":""), $0} END{printf "\""}'
}
emit_json() { # KEY RAW_JSON_VALUE
	printf '{"key":%s,"value":%s}\n' "$(json_string "$1")" "$2" >>"$RESULT_PORT"
}
emit_str() { emit_json "$1" "$(json_string "$2")"; }  # KEY STRING
emit_lines() { emit_json "$1" "$(json_array)"; }      # KEY < lines
emit_num() { emit_json "$1" "$2"; }                   # KEY NUMBER

# --- find and run the step script -------------------------------------------
script=
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	dev=/dev/${b##*/}
	if head -c 64 "$dev" 2>/dev/null | head -n 1 | grep -q '^# snapinit-agent-script'; then
		tr -d '\000' <"$dev" >"$work/step.sh"
		script=$work/step.sh
		break
	fi
done

step_name=none
status=0
: >"$work/step.out"
if [ -n "$script" ]; then
	step_name=$(sed -n 's/^# name: //p' "$script" | head -n 1)
	klog "running step '$step_name' from $dev"
	# shellcheck source=/dev/null
	(. "$script") >"$work/step.out" 2>&1 </dev/null
	status=$?
	sed 's/^/step: /' "$work/step.out" >/dev/console 2>/dev/null
	klog "step '$step_name' exit status $status"
else
	klog "no step script disk found; reporting state only"
fi

# --- report ------------------------------------------------------------------
emit_str step "$step_name"
emit_num status "$status"
emit_lines output <"$work/step.out"
emit_str cmdline "$(cat /proc/cmdline)"
emit_lines mounts </proc/self/mountinfo
emit_lines mtd </proc/mtd 2>/dev/null || emit_json mtd '[]'

if ! grep -qw 'agent.brief=1' /proc/cmdline; then
# Tree of / (this mount only): "mode size 'path'[ -> 'target']" per entry, sorted;
# tree_sha256 covers the listing plus the content hash of every regular file.
find / -xdev 2>/dev/null | sort >"$work/paths"
# (directory sizes are filesystem-specific, so they are shown as "-")
tr '\n' '\0' <"$work/paths" | xargs -0 stat -c '%A %s %N' 2>/dev/null |
	awk '/^d/ {$2 = "-"} {print}' >"$work/tree"
find / -xdev -type f 2>/dev/null | sort | tr '\n' '\0' |
	xargs -0 sha256sum 2>/dev/null | grep -v " $work/" >"$work/files.sha"
emit_lines tree <"$work/tree"
emit_str tree_sha256 "$(grep -v " '$work" "$work/tree" | cat - "$work/files.sha" | sha256sum | cut -d' ' -f1)"
find /etc -type f 2>/dev/null | sort | tr '\n' '\0' | xargs -0 sha256sum 2>/dev/null |
	json_escape | awk 'BEGIN{printf "{"} {p=$0; sub(/^[0-9a-f]+  /,"",p); printf "%s\"%s\":\"%s\"", (NR>1?",":""), p, $1} END{printf "}"}' \
	>"$work/etc.json"
emit_json etc_sha256 "$(cat "$work/etc.json")"
fi
dmesg 2>/dev/null | grep 'snapinit:' | emit_lines dmesg_snapinit
emit_str uptime "$(cut -d' ' -f1 /proc/uptime)"
emit_json "done" true

sync
klog "report done; rebooting"
if grep -qw 'agent.noreboot=1' /proc/cmdline; then
	exec /bin/sh
fi
reboot -f
# PID 1 must never exit; wait for the reboot to take effect.
while :; do sleep 1; done
