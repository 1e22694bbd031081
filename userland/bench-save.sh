#!/bin/sh
# Measures how long `snapshot save` takes for 1 MiB and 16 MiB of changes in the upper
# directory, written to an image file (erase size 64 KiB). Prints, asserts nothing.
#
#   userland/bench-save.sh            # release build, image and trees under $TMPDIR
#
# Two kinds of content: random bytes (incompressible: gzip works for nothing) and text-like
# bytes (compresses well), each stored gzipped (the default) and with --no-compress.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-cli}"
cargo build --release -q -p snapshot --manifest-path "$here/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/snapshot"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
img="$work/flash.img"
# 128 MiB partition, 20 MiB back buffer: a 16 MiB volatile must fit the back buffer.
truncate -s 128M "$img"
"$bin" -d "$img" format --backbuf-blocks 320 >/dev/null

mktree() { # dir MiB kind
    mkdir -p "$1/etc/data"
    n=$(( $2 * 16 ))   # 64 KiB files
    i=0
    while [ $i -lt $n ]; do
        if [ "$3" = random ]; then
            head -c 65536 /dev/urandom > "$1/etc/data/f$i"
        else
            yes "option ipaddr '192.168.$((i % 250)).1' # config line $i" | head -c 65536 > "$1/etc/data/f$i"
        fi
        i=$((i + 1))
    done
}

now() { date +%s.%N; }

printf '%-8s %-7s %-12s %10s %12s\n' size content mode seconds MiB/s
for mib in 1 16; do
    for kind in random text; do
        up="$work/up-$mib-$kind"
        mktree "$up" "$mib" "$kind"
        for mode in gzip plain; do
            flag=""
            [ "$mode" = plain ] && flag="--no-compress"
            # Warm the page cache for the tree so the run measures pack + flash writes.
            cat "$up"/etc/data/* >/dev/null
            t0=$(now)
            "$bin" -d "$img" save --upper "$up" $flag >/dev/null
            t1=$(now)
            secs=$(echo "$t1 - $t0" | bc -l)
            rate=$(echo "$mib / $secs" | bc -l)
            printf '%-8s %-7s %-12s %10.3f %12.1f\n' "${mib}MiB" "$kind" "$mode" "$secs" "$rate"
        done
    done
done
"$bin" -d "$img" verify >/dev/null && echo "verify: ok"
