#!/usr/bin/env bash
# snapinit QEMU boot tests: every scenario on every architecture, one pass/fail table.
#   qemu/run-tests.sh [--arch LIST] [--scenario LIST] [--medium M] [--cuts N] [--op-cuts N]
#                     [--prebuilt DIR] [--keep]
# LIST is comma-separated; default: every architecture of qemu/arch.sh (x86_64, mipsel,
# mips, arm, aarch64) and every scenario of qemu/scenarios/ (blank, config, commit,
# rollback, chain, roundtrip, corrupt, timing, powercut, cutops, trial) but the opt-in ones,
# which run only when named (fleet: `--arch x86_64 --scenario fleet@x86_64`). A scenario written
# NAME@ARCH[+ARCH...] runs on those architectures of the run only (the table shows '-'
# elsewhere): `--arch mipsel,arm --scenario chain,trial@mipsel`. Scenarios never name an
# architecture: each is written once (qemu/scenarios/NN-name.sh) and runs on each of them;
# what differs between architectures is the table in qemu/arch.sh.
# Builds first, per architecture (qemu/build.sh: kernel, cached; snapinit and a static
# `snapshot`, native or cross; busybox; squashfs root) and the host's `snapshot` (images
# written on the host), then boots each scenario under QEMU (TCG) with
# init=/sbin/snapinit snapinit.init=/sbin/test-agent; the guest acts through a step script
# and the checks read the agent's JSON result file (and the flash image on the host).
# --medium: the flash every scenario of the run boots on (qemu/lib.sh): nor (default: the
# image is the MTD partition rootfs_data), ubi (the image holds UBI, rootfs_data is a UBI
# volume on block2mtd) or nandsim (a RAM-only 2 KiB-page NAND with UBI). Without --scenario,
# the scenarios that run on that medium (SCENARIO_MEDIA in their files; unset: nor only).
# --cuts: planned power cuts of the powercut scenario (default 6, at least 4).
# --op-cuts: power cuts the cutops scenario lands inside each of commit, rollback and
# format (default 20).
# --prebuilt DIR: boot what `qemu/build.sh DIR/ARCH ARCH` built before (qemu/suite.sh builds
# once for all its runs) instead of building into the run's directory; an architecture not
# built there fails its scenarios.
# --keep keeps every artifact (default: only those of a failed run).
# Exit status: 0 all passed, 1 any failure (a failed build or a boot that could not happen
# fails its architecture's scenarios loudly; nothing is skipped).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"

# The scenarios, in file order (qemu/scenarios/NN-name.sh defines scenario_<name>). A
# scenario file that adds its name to OPT_IN runs only when --scenario names it.
ALL_SCENARIOS=() OPT_IN=() DEFAULT_SCENARIOS=()
for f in "$here"/scenarios/[0-9]*.sh; do
  . "$f"
  n=${f##*/}
  n=${n%.sh}
  ALL_SCENARIOS+=("${n#*-}")
done
for s in "${ALL_SCENARIOS[@]}"; do
  [[ " ${OPT_IN[*]} " == *" $s "* ]] || DEFAULT_SCENARIOS+=("$s")
done

arches=$(IFS=,; echo "${ARCHES[*]}") scen='' keep=0 prebuilt=
PC_CUTS=6 OP_CUTS=20
while (($#)); do
  case $1 in
    --arch) arches=${2:?}; shift 2 ;;
    --scenario | --only) scen=${2:?}; shift 2 ;;
    --cuts) PC_CUTS=${2:?}; shift 2 ;;
    --op-cuts) OP_CUTS=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --prebuilt) prebuilt=${2:?}; shift 2 ;;
    --medium) MEDIUM=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-tests.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((PC_CUTS >= 4)) || { echo "run-tests.sh: --cuts must be at least 4" >&2; exit 2; }
medium_load || exit 2
on_medium() { [[ " ${SCENARIO_MEDIA[$1]:-nor} " == *" $MEDIUM "* ]]; } # SCENARIO
if [[ -z $scen ]]; then
  for s in "${DEFAULT_SCENARIOS[@]}"; do on_medium "$s" && scen+="${scen:+,}$s"; done
fi
IFS=, read -r -a arch_list <<<"$arches"
IFS=, read -r -a SCENARIOS <<<"$scen"
for a in "${arch_list[@]}"; do arch_load "$a" || exit 2; done
declare -A ONLY # scenario -> " arch arch " when it was given as NAME@ARCH+ARCH
for i in "${!SCENARIOS[@]}"; do
  s=${SCENARIOS[$i]}
  if [[ $s == *@* ]]; then
    ONLY[${s%%@*}]=" ${s#*@} "
    ONLY[${s%%@*}]=${ONLY[${s%%@*}]//+/ }
    for a in ${ONLY[${s%%@*}]}; do
      [[ " ${arch_list[*]} " == *" $a "* ]] || {
        echo "run-tests.sh: $s names $a, which is not in --arch ${arch_list[*]}" >&2; exit 2; }
    done
    s=${s%%@*}
    SCENARIOS[$i]=$s
  fi
  declare -F "scenario_$s" >/dev/null || {
    echo "run-tests.sh: no scenario '$s' (known: ${ALL_SCENARIOS[*]})" >&2; exit 2; }
  on_medium "$s" || {
    echo "run-tests.sh: scenario '$s' does not run on the $MEDIUM medium (it runs on: ${SCENARIO_MEDIA[$s]:-nor})" >&2; exit 2; }
done

T_START=$(now)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/snapinit-tests.XXXXXX")
echo "run-tests: work dir $WORK"

# --- builds ----------------------------------------------------------------------------
BUILDS=()
"$here/deps.sh"
echo "== build: host snapshot (images written on the host)"
t0=$(now)
if ! (cd "$repo" && cargo build -q --release -p snapshot) >&2; then
  echo "run-tests: FAIL: host cargo build -p snapshot failed; nothing was booted" >&2
  exit 1
fi
SNAPSHOT_HOST=$CARGO_TARGET_DIR/release/snapshot
BUILDS+=("host snapshot: $(secs "$t0" "$(now)") s")
# build ARCH: qemu/build.sh into BIN[ARCH], or what --prebuilt DIR holds; KERNEL[ARCH] set.
build() {
  if [[ -z $prebuilt ]]; then
    BIN[$1]=$WORK/$1/bin
    KERNEL[$1]=$("$here/build.sh" "${BIN[$1]}" "$1" | tail -n 1)
  else
    BIN[$1]=$(cd "$prebuilt" && pwd)/$1
    [[ -s ${BIN[$1]}/kernel.path ]] || {
      echo "run-tests: $1 is not built in $prebuilt (qemu/build.sh $prebuilt/$1 $1)" >&2
      return 1
    }
    echo "run-tests: $1 as built in ${BIN[$1]}"
    KERNEL[$1]=$(cat "${BIN[$1]}/kernel.path")
  fi
}
for a in "${arch_list[@]}"; do
  echo "== build: $a (qemu/build.sh)"
  t0=$(now)
  if build "$a" && [[ -s ${KERNEL[$a]} ]]; then
    ROOTFS[$a]=${BIN[$a]}/rootfs.squashfs
    BUILT+=("$a")
    BUILDS+=("$a: $(secs "$t0" "$(now)") s ($(tr '\n' ' ' <"${BIN[$a]}/build-times" | sed 's/ $//')); stripped: snapinit $(stat -c %s "${BIN[$a]}/snapinit") B, snapshot $(stat -c %s "${BIN[$a]}/snapshot") B")
  else
    echo "run-tests: FAIL: the $a build failed; its scenarios fail" >&2
    BUILDS+=("$a: FAILED after $(secs "$t0" "$(now)") s")
    for s in "${SCENARIOS[@]}"; do
      [[ -z ${ONLY[$s]:-} || ${ONLY[$s]} == *" $a "* ]] && ROWS+=("$a $s FAIL 0")
    done
  fi
done

# --- scenarios --------------------------------------------------------------------------
for a in "${BUILT[@]}"; do
  for s in "${SCENARIOS[@]}"; do
    [[ -z ${ONLY[$s]:-} || ${ONLY[$s]} == *" $a "* ]] || continue
    run_scenario "$a" "$s"
  done
done

# --- report -----------------------------------------------------------------------------
echo
echo "snapinit QEMU boot tests on the $MEDIUM medium (result and seconds per scenario)"
report_table "${arch_list[@]}"
echo
echo "builds (s; kernels are cached after their first build):"
printf '  %s\n' "${BUILDS[@]}"
for a in "${BUILT[@]}"; do
  w=$(printf '%s\n' "${WALLS[@]}" | awk -v a="$a" '$1 == a {print $2}' | stats)
  e=$(printf '%s\n' "${EXECS[@]}" | awk -v a="$a" '$1 == a {print $2}' | stats)
  r=$(printf '%s\n' "${RSS[@]}" | awk -v a="$a" '$1 == a {print $2}' | stats)
  echo "$a: wall per boot (s) $w"
  echo "$a: snapinit start->exec (ms) $e"
  echo "$a: snapinit peak RSS (kB) $r"
done
((${#NOTES[@]} == 0)) || printf '%s\n' "${NOTES[@]}"
nfail=0 npass=0
for r in "${ROWS[@]}"; do
  read -r -a f <<<"$r"
  if [[ ${f[2]} == pass ]]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
done
echo "total: $(secs "$T_START" "$(now)") s"
echo "qemu: $npass passed, $nfail failed"
if ((nfail)); then
  echo "console logs of failed scenarios:"
  printf '  %s\n' "${FAILED_LOGS[@]}"
  echo "artifacts kept in $WORK"
  exit 1
fi
if ((keep)); then
  echo "artifacts kept in $WORK"
else
  rm -rf "$WORK"
fi
