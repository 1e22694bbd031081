# nandsim: the chain on a UBI volume over real NAND geometry, in one boot (RAM only).
# `run-tests.sh --medium nandsim`: boot.sh gives the kernel a nandsim chip (64 MiB, 2 KiB
# pages, 128 KiB blocks) that UBI attaches, formatting the empty flash; there is no volume, so
# snapinit boots a plain tmpfs overlay. The step creates rootfs_data with qemu/ubimkvol.c
# (all free LEBs, dynamic), then: `snapshot info` (must name UBI and the LEB size the kernel
# reports), format, save (a volatile), commit (snapshot 1, with a file over several LEBs),
# save (a volatile over it), info, verify, extract of snapshot 1 / the volatile / all of them
# layered, each compared with the tree it was written from, commit (snapshot 2), rollback to
# snapshot 1, verify again and extract 1 again. The trees are given with --upper, so what is
# compared is exactly what was written. Last, `format --force` on the raw NAND (/dev/mtd0) and
# on gluebi's MTD view of the volume must both be refused with flash unchanged. Every step's
# output is in the result; a step that fails fails the boot (set -e).
SCENARIO_MEDIA[nandsim]=nandsim
scenario_nandsim() {
  vm boot1 '' --mem 256M <<'STEP' || return 1
emit_lines ubi_before <<EOF
$(ubi_volumes)
EOF
g=/sys/class/ubi/ubi0
emit_str mtd_type "$(cat /sys/class/mtd/mtd0/type)"
emit_str mtd_writesize "$(cat /sys/class/mtd/mtd0/writesize)"
emit_str mtd_erasesize "$(cat /sys/class/mtd/mtd0/erasesize)"
emit_str mtd_subpagesize "$(cat /sys/class/mtd/mtd0/subpagesize)"
emit_str min_io "$(cat $g/min_io_size)"
emit_str peb_count "$(cat $g/total_eraseblocks)"
emit_str bad_reserve "$(cat $g/reserved_for_bad)"
ubimkvol /dev/ubi0 rootfs_data max >/tmp/mk 2>&1
emit_lines ubimkvol </tmp/mk
emit_lines ubi_after <<EOF
$(ubi_volumes)
EOF
# gluebi: the volume is in /proc/mtd too, as an MTD of type "ubi"; the tool must still take
# /dev/ubi0_0 (info below names UBI and the LEB size)
emit_lines proc_mtd </proc/mtd
gl=$(sed -n 's/^\(mtd[0-9]*\): .*"rootfs_data"$/\1/p' /proc/mtd)
emit_str gluebi_mtd "$gl"
emit_str gluebi_type "$(cat /sys/class/mtd/$gl/type)"
v=/sys/class/ubi/ubi0_0
leb=$(cat $v/usable_eb_size)
emit_str leb_size "$leb"
emit_str vol_lebs "$(cat $v/reserved_ebs)"
emit_str vol_type "$(cat $v/type)"
emit_str avail_after "$(cat $g/avail_eraseblocks)"
snapshot info >/tmp/i0 2>&1
emit_lines info_new </tmp/i0
snapshot format --yes
# the trees: a volatile, snapshot 1 (a file over several LEBs), the volatile above it, snapshot 2
mkdir -p /tmp/v0/etc /tmp/s1/etc/dir /tmp/v2/etc /tmp/s2/etc
printf 'volatile 0\n' >/tmp/v0/etc/v0-file
printf 'one\n' >/tmp/s1/etc/s1-file
printf 'in a dir\n' >/tmp/s1/etc/dir/f
ln -s s1-file /tmp/s1/etc/s1-link
dd if=/dev/urandom of=/tmp/s1/etc/big bs=4096 count=160 2>/dev/null
printf 'changed by the volatile\n' >/tmp/v2/etc/s1-file
printf 'volatile 2\n' >/tmp/v2/etc/v2-file
printf 'two\n' >/tmp/s2/etc/s2-file
# s1 with v2 over it: what `extract all` must build
mkdir /tmp/all
cp -a /tmp/s1/. /tmp/all/
cp -a /tmp/v2/. /tmp/all/
snapshot save --upper /tmp/v0
snapshot commit --upper /tmp/s1 --no-reboot
snapshot save --upper /tmp/v2
snapshot info >/tmp/i1 2>&1
emit_lines info_chain </tmp/i1
snapshot verify >/tmp/ver1 2>&1
emit_lines verify1 </tmp/ver1
for x in 1 volatile all; do
	snapshot extract $x /tmp/x-$x
done
emit_str want_s1 "$(dirhash /tmp/s1)"
emit_str got_s1 "$(dirhash /tmp/x-1)"
emit_str want_vol "$(dirhash /tmp/v2)"
emit_str got_vol "$(dirhash /tmp/x-volatile)"
emit_str want_all "$(dirhash /tmp/all)"
emit_str got_all "$(dirhash /tmp/x-all)"
snapshot commit --upper /tmp/s2 --no-reboot
snapshot info >/tmp/i2 2>&1
emit_lines info_two </tmp/i2
snapshot rollback 1 --yes --no-reboot
snapshot info >/tmp/i3 2>&1
emit_lines info_rolled </tmp/i3
snapshot verify >/tmp/ver2 2>&1
emit_lines verify2 </tmp/ver2
snapshot extract 1 /tmp/x-after
emit_str got_after "$(dirhash /tmp/x-after)"
# the raw NAND under UBI and gluebi's MTD view of the volume are refused before any I/O: a
# format --force there would erase and program from offset 0, which these 8 MiB would show
nand_head() { dd if=/dev/mtd0 bs=128k count=64 2>/dev/null | sha256sum | cut -d' ' -f1; }
emit_str nand_before "$(nand_head)"
rc=0; snapshot format --force --yes --device /dev/mtd0 >/tmp/rn 2>&1 || rc=$?
emit_str rawnand_rc "$rc"
emit_lines rawnand </tmp/rn
rc=0; snapshot format --force --yes --device /dev/$gl >/tmp/gf 2>&1 || rc=$?
emit_str gluebi_rc "$rc"
emit_lines gluebi_format </tmp/gf
emit_str nand_after "$(nand_head)"
snapshot extract 1 /tmp/x-last
emit_str got_last "$(dirhash /tmp/x-last)"
STEP
  local leb
  leb=$(get boot1 leb_size)
  summary "nandsim: MTD $(get boot1 mtd_type), page $(get boot1 mtd_writesize) B, sub-page $(get boot1 mtd_subpagesize) B, block $(get boot1 mtd_erasesize) B; UBI: min I/O $(get boot1 min_io) B, $(get boot1 peb_count) PEBs ($(get boot1 bad_reserve) reserved for bad blocks), LEB $leb B; rootfs_data $(get boot1 vol_lebs) LEBs"
  check "the MTD is a NAND with 2 KiB pages and 128 KiB blocks" \
    eval 'is boot1 mtd_type nand && is boot1 mtd_writesize 2048 && is boot1 mtd_erasesize 131072'
  check "UBI was attached with no volume" empty boot1 ubi_before
  check "ubimkvol created rootfs_data as ubi0_0" has boot1 ubi_after '^ubi0_0 rootfs_data$'
  check "the volume is dynamic and took every free LEB" \
    eval 'is boot1 vol_type dynamic && is boot1 avail_after 0 && [[ $(get boot1 vol_lebs) -gt 0 ]]'
  check "the LEB is smaller than the 128 KiB block (UBI headers)" \
    eval '[[ $leb -gt 0 && $leb -lt 131072 ]]'
  check "snapinit booted without the volume (no chain)" lacks boot1 dmesg_snapinit 'snapinit: chain on'
  check "gluebi lists rootfs_data in /proc/mtd as an MTD of type ubi" \
    eval '[[ -n $(get boot1 gluebi_mtd) ]] && is boot1 gluebi_type ubi'
  check "snapshot info names the medium UBI (not gluebi's MTD view)" has boot1 info_new '^medium: .*UBI'
  check "snapshot info gives the kernel's LEB size ($leb)" has boot1 info_new "(^|[^0-9])$leb([^0-9]|$)"
  check "info after commit + save: 1 snapshot and a volatile" \
    has boot1 info_chain '^status: +chain: 1 snapshot\(s\), volatile present'
  check "snapshot 1 spans several LEBs" \
    eval '[[ $(get boot1 info_chain | awk '"'"'$1 == 1 && $2 == "snapshot" {print $6}'"'"') -gt 1 ]]'
  check "verify: snapshot 1 and the volatile are good" has boot1 verify1 '^all good: 1 snapshot\(s\), 1 volatile'
  check "snapshot 1 extracted as written" eval 'is boot1 got_s1 "$(get boot1 want_s1)"'
  check "the volatile extracted as written" eval 'is boot1 got_vol "$(get boot1 want_vol)"'
  check "all layered: snapshot 1 with the volatile over it" eval 'is boot1 got_all "$(get boot1 want_all)"'
  check "the trees differ (a check that can fail)" eval '[[ $(get boot1 want_s1) != "$(get boot1 want_all)" ]]'
  check "info before the rollback: 2 snapshots" has boot1 info_two '^status: +chain: 2 snapshot\(s\)'
  check "info after the rollback: 1 snapshot" has boot1 info_rolled '^status: +chain: 1 snapshot\(s\), no volatile'
  check "verify after the rollback: snapshot 1 is good" has boot1 verify2 '^all good: 1 snapshot\(s\), 0 volatile'
  check "snapshot 1 after the rollback extracted as written" eval 'is boot1 got_after "$(get boot1 want_s1)"'
  check "format --force on the raw NAND is refused (exit 3), naming UBI" \
    eval 'is boot1 rawnand_rc 3 && has boot1 rawnand "raw NAND .*ubimkvol -N rootfs_data"'
  check "format --force on gluebi's view is refused (exit 3), naming /dev/ubiX_Y" \
    eval 'is boot1 gluebi_rc 3 && has boot1 gluebi_format "gluebi.*/dev/ubiX_Y"'
  check "the raw NAND's first 8 MiB are unchanged by both" \
    eval '[[ -n $(get boot1 nand_before) ]] && is boot1 nand_after "$(get boot1 nand_before)"'
  check "the volume's chain is intact after both" eval 'is boot1 got_last "$(get boot1 want_s1)"'
}
