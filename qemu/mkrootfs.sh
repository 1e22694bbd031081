#!/usr/bin/env bash
# Build the read-only squashfs (xz) root used by the QEMU boot tests.
#   qemu/mkrootfs.sh OUT.squashfs [--snapinit PATH] [--snapshot PATH]
#                    [--agent PATH] [--add SRC:/DEST[:MODE]]...
#                    [--busybox PATH [--busybox-list FILE]]
# Contents: static busybox + applet links, busybox init (/sbin/init) with
# /etc/inittab + /etc/init.d/rcS, passwd/group, sample files under /etc,
# mount points, /dev/console + /dev/null nodes, and the optional binaries
# /sbin/snapinit, /sbin/snapshot, /sbin/test-agent.
# --busybox: another static busybox (default: the host's); for a foreign
# architecture give its `busybox --list-full` output as --busybox-list.
set -euo pipefail

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=
snapinit=
snapshot=
agent=
adds=()
busybox=
busybox_list=
while (($#)); do
  case $1 in
    --snapinit) snapinit=${2:?}; shift 2 ;;
    --snapshot) snapshot=${2:?}; shift 2 ;;
    --agent) agent=${2:?}; shift 2 ;;
    --add) adds+=("${2:?}"); shift 2 ;;
    --busybox) busybox=${2:?}; shift 2 ;;
    --busybox-list) busybox_list=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "mkrootfs.sh: unknown option $1" >&2; usage ;;
    *)
      [[ -z $out ]] || usage
      out=$1; shift ;;
  esac
done
[[ -n $out ]] || usage

"$here/deps.sh"

if [[ -z $busybox ]]; then
  busybox=/bin/busybox
  [[ -x $busybox ]] || busybox=$(command -v busybox)
fi
if ! file_out=$(LC_ALL=C od -An -c -N4 "$busybox") || [[ $file_out != *E*L*F* ]]; then
  echo "mkrootfs.sh: $busybox is not an ELF binary" >&2
  exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
  echo "mkrootfs.sh: $busybox is dynamically linked; install busybox-static" >&2
  exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-rootfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -d -m 0755 "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/config,lib,root,var}
install -d -m 0755 "$stage"/{proc,sys,dev,rom,overlay,snapshot,mnt}
install -d -m 1777 "$stage/tmp"
ln -s /tmp "$stage/var/tmp"
ln -s /tmp "$stage/var/run"

# busybox + one relative symlink per applet (paths from --list-full).
install -m 0755 "$busybox" "$stage/bin/busybox"
while IFS= read -r applet; do
  [[ -n $applet && $applet != bin/busybox ]] || continue
  dir=${applet%/*}
  case $dir in
    bin | sbin) rel=../bin/busybox ;;
    usr/bin | usr/sbin) rel=../../bin/busybox ;;
    *) continue ;;
  esac
  [[ -e $stage/$applet || -L $stage/$applet ]] || ln -s "$rel" "$stage/$applet"
done < <(if [[ -n $busybox_list ]]; then cat "$busybox_list"; else "$busybox" --list-full; fi)
# /sbin/init must be busybox (the agent or snapinit are chosen with init=).
ln -sf ../bin/busybox "$stage/sbin/init"

cat >"$stage/etc/inittab" <<'INITTAB'
# busybox init (used when booting with init=/sbin/init)
::sysinit:/etc/init.d/rcS
::askfirst:-/bin/sh
::ctrlaltdel:/bin/reboot -f
::shutdown:/bin/sync
INITTAB

cat >"$stage/etc/init.d/rcS" <<'RCS'
#!/bin/sh
# Minimal rc: mount the API filesystems unless something (snapinit) already did.
grep -q ' /proc ' /proc/mounts 2>/dev/null || mount -t proc proc /proc
grep -q ' /sys ' /proc/mounts || mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
grep -q ' /tmp ' /proc/mounts || mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname -F /etc/hostname
echo "rcS: up $(cut -d' ' -f1 /proc/uptime)s"
# A test agent, if present and requested (agent.run=1 on the kernel cmdline).
if grep -qw 'agent.run=1' /proc/cmdline && [ -x /sbin/test-agent ]; then
  exec /sbin/test-agent
fi
RCS
chmod 0755 "$stage/etc/init.d/rcS"

cat >"$stage/etc/passwd" <<'EOF2'
root:x:0:0:root:/root:/bin/sh
daemon:*:1:1:daemon:/var:/bin/false
nobody:*:65534:65534:nobody:/var:/bin/false
EOF2
cat >"$stage/etc/group" <<'EOF2'
root:x:0:
daemon:x:1:
nogroup:x:65534:
EOF2
cat >"$stage/etc/shadow" <<'EOF2'
root::0:0:99999:7:::
EOF2
chmod 0600 "$stage/etc/shadow"
echo snapinit-test >"$stage/etc/hostname"
cat >"$stage/etc/banner" <<'EOF2'
  snapinit QEMU test image (busybox)
EOF2
cat >"$stage/etc/config/system" <<'EOF2'
config system
	option hostname 'snapinit-test'
	option timezone 'UTC'
EOF2
cat >"$stage/etc/config/network" <<'EOF2'
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'
EOF2
cat >"$stage/etc/os-release" <<'EOF2'
NAME="snapinit-test"
ID=snapinit-test
EOF2
printf 'squashfs-original\n' >"$stage/etc/rom-marker"

put() { # put SRC DEST [MODE]
  local src=$1 dest=$2 mode=${3:-0755}
  if [[ ! -f $src ]]; then
    echo "mkrootfs.sh: no such file: $src" >&2
    exit 1
  fi
  install -D -m "$mode" "$src" "$stage/${dest#/}"
}
[[ -z $snapinit ]] || put "$snapinit" /sbin/snapinit
[[ -z $snapshot ]] || put "$snapshot" /sbin/snapshot
[[ -z $agent ]] || put "$agent" /sbin/test-agent
for a in "${adds[@]}"; do
  IFS=: read -r a_src a_dest a_mode <<<"$a"
  put "$a_src" "${a_dest:?--add needs SRC:/DEST}" "${a_mode:-0755}"
done

mkdir -p "$(dirname "$out")"
rm -f "$out"
# Device nodes via pseudo definitions (no mknod needed in the staging dir):
# the kernel opens /dev/console for PID 1 before anyone mounts devtmpfs.
mksquashfs "$stage" "$out" -comp xz -all-root -noappend -quiet -no-progress \
  -p '/dev/console c 0600 0 0 5 1' -p '/dev/null c 0666 0 0 1 3' >/dev/null
echo "mkrootfs.sh: wrote $out ($(stat -c %s "$out") bytes)" >&2
