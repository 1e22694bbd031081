#!/usr/bin/env bash
# The QEMU part of the test command (scripts/test.sh): which scenarios run where, on which
# medium. Scenarios never name an architecture; this file chooses.
#   qemu/suite.sh
# The jobs: a build per architecture (qemu/build.sh into target/qemu-prebuild/ARCH: kernel,
# cached; snapinit, the static `snapshot`, busybox, the squashfs root), then the runs, each one
# qemu/run-tests.sh call on those builds (--prebuilt):
#   x86-nor       x86_64, every scenario on NOR (cutops: 20 cuts inside each of commit,
#                 rollback and format; powercut: 4 planned cuts of a save)
#   x86-ubi       x86_64 on UBI: blank, chain, roundtrip, powercut, trial (a volume on
#                 block2mtd: persistent, so power cuts; PID 1's trial marks as atomic LEB changes)
#   x86-nandsim   x86_64 on nandsim with 2 KiB pages (RAM, one boot)
#   x86-fleet     the fleet's two QEMU units (nginx, mosquitto on the host), and convert (a real JFFS2)
#   cross-nor     blank, chain and roundtrip on MIPS malta (little-endian) and the ARM virt
#                 boards (ARMv7, AArch64) in one run, so that the host-written chain is compared
#                 across the three and the round trip's flash is carried from each to the next
#   cross-cut     powercut with 4 cuts on the two ARM boards
#   aarch64-ubi   AArch64 on UBI: blank, chain, roundtrip, powercut
# Two workers take the jobs, so that both cores work to the end (QEMU's TCG runs a guest on
# one core; a cold build of MIPS and ARM is ~20 CPU minutes). The foreground starts with
# x86_64, the background with MIPS and ARM; each then takes the next job nobody has taken
# yet, from the other end of the list. A run first waits for the builds it needs (whoever
# builds them). That keeps the test command within its hour on a cold machine
# (qemu/README.md, "Time budget"; the kernels start earlier, in scripts/test.sh). The
# foreground streams its jobs' output; the background's follow at the end, each under its name.
# On demand only: big-endian MIPS (`--arch mips`), the other scenarios on the other
# architectures (trial passed on all of them, mipsel's powercut too: qemu/README.md).
# Exit status: 0 when every job ran and passed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Times are seconds since the test command started (scripts/test.sh exports SNAPINIT_T0).
export SNAPINIT_T0=${SNAPINIT_T0:-$(date +%s)}
at() { echo $(($(date +%s) - SNAPINIT_T0)); }
step() { printf '\n== %s (at %d s)\n' "$*" "$(at)"; }

queue=target/qemu-jobs prebuilt=target/qemu-prebuild
rm -rf "$queue" "$prebuilt"
mkdir -p "$queue" "$prebuilt"
bglog=$queue/background.log

# The jobs in the report's order; what each runs, and the builds each run needs.
JOBS=(build-x86_64 build-mipsel build-arm build-aarch64
  x86-nor x86-ubi x86-nandsim x86-fleet cross-nor cross-cut aarch64-ubi)
declare -A ARGS=(
  [x86-nor]="--arch x86_64 --cuts 4"
  [x86-ubi]="--arch x86_64 --medium ubi --scenario blank,chain,roundtrip,powercut,trial --cuts 4"
  [x86-nandsim]="--arch x86_64 --medium nandsim"
  [x86-fleet]="--arch x86_64 --scenario fleet@x86_64,convert@x86_64"
  [cross-nor]="--arch mipsel,arm,aarch64 --scenario blank,chain,roundtrip"
  [cross-cut]="--arch arm,aarch64 --scenario powercut --cuts 4"
  [aarch64-ubi]="--arch aarch64 --medium ubi --scenario blank,chain,roundtrip,powercut --cuts 4"
)
for j in "${JOBS[@]}"; do
  case $j in
    build-*) echo "qemu/build.sh $prebuilt/${j#build-} ${j#build-}" ;;
    *) echo "qemu/run-tests.sh --prebuilt $prebuilt ${ARGS[$j]}" ;;
  esac >"$queue/$j.cmd"
done

# run_job WORKER JOB: runs JOB unless the other worker took it first (mkdir is the claim).
# Leaves JOB.log, JOB.worker, JOB.rc (its exit status) and JOB.time (start, seconds taken)
# in the queue.
run_job() {
  local worker=$1 job=$2 rc=0 t0 took a cmd
  mkdir "$queue/$job.taken" 2>/dev/null || return 0
  echo "$worker" >"$queue/$job.worker"
  cmd=$(<"$queue/$job.cmd")
  if [[ $job != build-* ]]; then # wait for its builds, wherever they run
    for a in $(sed -n 's/.*--arch \([^ ]*\).*/\1/p' <<<"$cmd" | tr , ' '); do
      while [[ ! -e $queue/build-$a.rc ]]; do
        # The foreground stops waiting for a background that died (set only there).
        if [[ -n ${BG_PID:-} ]] && ! kill -0 "$BG_PID" 2>/dev/null; then
          [[ -e $queue/build-$a.rc ]] || echo "the background worker died" >"$queue/build-$a.rc"
        fi
        sleep 5
      done
      if [[ $(cat "$queue/build-$a.rc") != 0 ]]; then
        echo "$job: not run, the $a build failed" | tee "$queue/$job.log"
        echo "build-$a" >"$queue/$job.rc"
        return 0
      fi
    done
  fi
  t0=$(at)
  printf '\n== QEMU job %s (%s, at %d s): %s\n' "$job" "$worker" "$t0" "$cmd"
  # shellcheck disable=SC2086 # the command is words
  if [[ $worker == foreground ]]; then
    $cmd 2>&1 | tee "$queue/$job.log" || rc=$?
  else
    $cmd >"$queue/$job.log" 2>&1 || rc=$?
  fi
  took=$(($(at) - t0))
  echo "$t0 $took" >"$queue/$job.time"
  echo "$rc" >"$queue/$job.rc"
  printf '== QEMU job %s: exit %d after %d s\n' "$job" "$rc" "$took"
}
export -f run_job at
export queue

step "QEMU: two workers take the jobs; the background one logs to $bglog"
# A session of its own, so that a failure in the foreground stops all of it.
setsid bash -c 'set -eo pipefail
    for j in build-mipsel build-arm build-aarch64 cross-nor cross-cut aarch64-ubi \
        x86-fleet x86-nandsim x86-ubi x86-nor build-x86_64; do
        run_job background "$j"
    done' >"$bglog" 2>&1 &
bg=$! BG_PID=$!
trap 'kill -- "-$bg" 2>/dev/null || true' EXIT
for j in build-x86_64 x86-nor x86-ubi x86-nandsim x86-fleet build-aarch64 build-arm \
  build-mipsel aarch64-ubi cross-cut cross-nor; do
  run_job foreground "$j"
done

step "QEMU: waiting for the background worker"
rc=0
wait "$bg" || rc=$?
trap - EXIT
cat "$bglog"
for j in "${JOBS[@]}"; do
  if [[ $(cat "$queue/$j.worker" 2>/dev/null) == background ]]; then
    printf '\n== QEMU job %s (background): its output\n' "$j"
    cat "$queue/$j.log"
  fi
done

step "QEMU: every job"
fail=0
for j in "${JOBS[@]}"; do
  r=$(cat "$queue/$j.rc" 2>/dev/null || echo 'never ran')
  case $r in
    0) r=passed ;;
    build-*) r="not run: $r failed"; fail=1 ;;
    *) r="FAILED ($r)"; fail=1 ;;
  esac
  when=''
  if read -r start took 2>/dev/null <"$queue/$j.time"; then
    when="at $start s, $took s"
  fi
  printf '  %-14s %-11s %-20s %s\n' "$j" "$(cat "$queue/$j.worker" 2>/dev/null || echo -)" \
    "$when" "$r"
done
if [[ $rc != 0 ]]; then
  echo "qemu/suite.sh: the background worker failed (exit $rc): see above" >&2
  fail=1
fi
exit "$fail"
