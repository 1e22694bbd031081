#!/usr/bin/env bash
# Installs the Debian packages the tests use (apt-get), as root: what scripts/test.sh runs first,
# and enough on its own before `cargo test` (the fleet tests need nginx, mosquitto, iproute2 and
# chromium, which takes the fleet page's screenshot).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "scripts/deps.sh must run as root (apt-get)" >&2
    exit 1
fi
missing=""
for pair in mksquashfs:squashfs-tools unshare:util-linux file:file gzip:gzip tar:tar \
            setfattr:attr bsdtar:libarchive-tools python3:python3 mkfs.ext4:e2fsprogs g++:g++ \
            ping:iputils-ping signify-openbsd:signify-openbsd nginx:nginx-light \
            mosquitto:mosquitto mosquitto_sub:mosquitto-clients ip:iproute2 chromium:chromium \
            mkfs.jffs2:mtd-utils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || missing="$missing busybox-static"
if [ -n "$missing" ]; then
    # A mirror mid-sync can fail one index (another architecture's, say): the install below
    # still works from the lists that did come, and fails loudly if it cannot.
    apt-get update -qq || echo "scripts/deps.sh: apt-get update reported errors; installing anyway" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
