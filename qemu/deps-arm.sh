#!/usr/bin/env bash
# Install what the ARM (QEMU virt) tests need on top of deps.sh (Debian bookworm, run as
# root). Idempotent: quiet and fast when everything is present.
#   qemu/deps-arm.sh
# Cross toolchains (gcc + glibc for armhf and arm64), Debian's Rust 1.96 (rustc-web,
# cargo-web, rust-web-src: the source of core/std for -Zbuild-std), qemu-system-arm
# (qemu-system-arm and qemu-system-aarch64), qemu-user-static.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/deps.sh" \
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
  rustc-web cargo-web rust-web-src \
  qemu-system-arm qemu-user-static file
