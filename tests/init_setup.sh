#!/bin/sh
# Tools the PID 1 namespace tests need: squashfs-tools (mksquashfs), a static
# busybox for the stand-in target, util-linux unshare/mount, GNU tar, gzip.
set -e
need=""
command -v mksquashfs >/dev/null 2>&1 || need="$need squashfs-tools"
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    need="$need busybox-static"
fi
command -v file >/dev/null 2>&1 || need="$need file"
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "init_setup.sh: need root to install:$need" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
