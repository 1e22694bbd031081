#!/usr/bin/env bash
# The QEMU part of the test command (scripts/test.sh): which scenarios run where, on which
# medium. Scenarios never name an architecture; this file chooses.
#   qemu/suite.sh
# x86_64 (foreground): every scenario on NOR (cutops: 20 cuts inside each of commit, rollback
# and format; powercut: 4 planned cuts of a save); on UBI blank, chain, roundtrip, powercut and
# trial (a volume on block2mtd: persistent, so power cuts; PID 1's trial marks as atomic LEB
# changes), then nandsim with 2 KiB pages (RAM, one boot); the fleet's two QEMU units.
# MIPS and ARM (background, from the start): their builds (kernels, cross-built binaries,
# busybox: ~20 CPU minutes cold), then blank, chain and roundtrip on MIPS malta (little-endian)
# and the ARM virt boards (ARMv7, AArch64) in one run, so that the host-written chain is
# compared across the three and the round trip's flash is carried from each to the next,
# powercut with 4 cuts on the two ARM boards, and UBI on AArch64 (blank, chain, roundtrip,
# powercut). x86_64's TCG uses one core; the other one builds and boots the rest, which keeps
# the test command near its hour on a cold machine (qemu/README.md, "Time budget"; the
# kernels themselves start earlier, in scripts/test.sh).
# On demand only: big-endian MIPS (`--arch mips`), the other scenarios on the other
# architectures (trial passed on all of them, mipsel's powercut too: qemu/README.md).
# Exit status: 0 when every run passed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

mkdir -p target
log=target/qemu-cross.log
step "QEMU: MIPS and ARM builds and boot tests start in the background (log: $log)"
# A session of its own, so that a failure in the foreground stops all of it.
setsid bash -c '
    set -e
    for a in mipsel arm aarch64; do
        qemu/build.sh "target/qemu-prebuild/$a" "$a" >/dev/null
    done
    printf "\n== QEMU boot tests: MIPS malta (little-endian), ARM virt (ARMv7, AArch64), NOR\n"
    qemu/run-tests.sh --arch mipsel,arm,aarch64 \
        --scenario blank,chain,roundtrip,powercut@arm+aarch64 --cuts 4
    printf "\n== QEMU boot tests on UBI, AArch64\n"
    qemu/run-tests.sh --arch aarch64 --medium ubi \
        --scenario blank,chain,roundtrip,powercut --cuts 4
' >"$log" 2>&1 &
cross=$!
trap 'kill -- "-$cross" 2>/dev/null || true' EXIT

step "QEMU boot tests: every scenario on x86_64 (NOR)"
qemu/run-tests.sh --arch x86_64 --cuts 4
step "QEMU boot tests on UBI, x86_64: a volume on block2mtd, then nandsim"
qemu/run-tests.sh --arch x86_64 --medium ubi \
    --scenario blank,chain,roundtrip,powercut,trial --cuts 4
qemu/run-tests.sh --arch x86_64 --medium nandsim
step "QEMU fleet: two x86_64 units take a signed bundle from nginx, report to mosquitto"
qemu/run-tests.sh --arch x86_64 --scenario fleet@x86_64

step "QEMU: waiting for the MIPS and ARM runs (background); their output follows"
rc=0
wait "$cross" || rc=$?
trap - EXIT
cat "$log"
if [ "$rc" != 0 ]; then
    echo "qemu/suite.sh: the MIPS/ARM part failed (exit $rc): see above" >&2
    exit 1
fi
