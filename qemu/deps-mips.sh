#!/usr/bin/env bash
# Install what the MIPS malta tests need on top of deps.sh (Debian bookworm,
# run as root). Idempotent: quiet and fast when everything is present.
#   qemu/deps-mips.sh
# Cross toolchains (gcc + glibc for mipsel and mips), Debian's Rust 1.96
# (rustc-web, cargo-web, rust-web-src: the source of core/std for
# -Zbuild-std), qemu-system-mips (both mips and mipsel malta), qemu-user-static.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/deps.sh" \
  gcc-mipsel-linux-gnu libc6-dev-mipsel-cross \
  gcc-mips-linux-gnu libc6-dev-mips-cross \
  rustc-web cargo-web rust-web-src \
  qemu-system-mips qemu-user-static file
