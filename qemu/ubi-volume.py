#!/usr/bin/env python3
# The content of one UBI volume in a raw flash image (qemu/mkflash.sh --ubi), on stdout.
#   qemu/ubi-volume.py FLASH.img [NAME]        (default rootfs_data)
# Reads every PEB's EC and VID headers (checking their CRCs), the volume table from the
# layout volume, and prints the volume's LEBs in order: for each LEB the copy with the highest
# sequence number, unmapped LEBs as 0xFF, reserved LEBs x LEB size bytes in all. This is what
# a read of /dev/ubiX_Y returns, so two images compare by their volume alone (UBI also writes
# its own headers: it formats empty PEBs on attach, moves LEBs for wear levelling). Exit 1 on
# an image it cannot read (no UBI, no such volume). The PEB size is found from the EC header
# offsets: the first PEB's, then the next "UBI#" magic.
import struct
import sys
import zlib

LAYOUT_VOL = 0x7FFFEFFF


def crc(b):  # UBI's CRC-32: the standard polynomial, initial ~0, no final inversion
    return zlib.crc32(b) ^ 0xFFFFFFFF


def die(msg):
    print(f"ubi-volume.py: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) not in (2, 3):
        die("usage: ubi-volume.py FLASH.img [NAME]")
    data = open(sys.argv[1], "rb").read()
    name = (sys.argv[2] if len(sys.argv) == 3 else "rootfs_data").encode()
    if data[:4] != b"UBI#":
        die("no UBI EC header at offset 0")
    peb = data.find(b"UBI#", 4)
    # A PEB size is a power of two of at least 4 KiB; the next EC header sits at one.
    while peb > 0 and (peb & (peb - 1) or peb < 4096):
        peb = data.find(b"UBI#", peb + 1)
    if peb <= 0:
        die("cannot find a second EC header (the PEB size)")
    lebs = {}  # (vol_id, lnum) -> (sqnum, offset of the data)
    leb_size = None
    for off in range(0, len(data) - peb + 1, peb):
        ec = data[off:off + 64]
        if ec[:4] != b"UBI#" or struct.unpack(">I", ec[60:64])[0] != crc(ec[:60]):
            continue  # empty, erased or torn: no LEB here
        vid_off, data_off = struct.unpack(">II", ec[16:24])
        vid = data[off + vid_off:off + vid_off + 64]
        if vid[:4] != b"UBI!" or struct.unpack(">I", vid[60:64])[0] != crc(vid[:60]):
            continue  # a free PEB (EC header only)
        vol_id, lnum = struct.unpack(">II", vid[8:16])
        sqnum = struct.unpack(">Q", vid[40:48])[0]
        leb_size = peb - data_off
        key = (vol_id, lnum)
        if key not in lebs or lebs[key][0] < sqnum:
            lebs[key] = (sqnum, off + data_off)
    if (LAYOUT_VOL, 0) not in lebs:
        die("no layout volume")
    vtbl = data[lebs[(LAYOUT_VOL, 0)][1]:]
    for vol_id in range(128):
        rec = vtbl[vol_id * 172:(vol_id + 1) * 172]
        reserved, = struct.unpack(">I", rec[:4])
        name_len, = struct.unpack(">H", rec[14:16])
        if reserved and rec[16:16 + name_len] == name:
            break
    else:
        die(f"no volume named {name.decode()}")
    out = sys.stdout.buffer
    for lnum in range(reserved):
        if (vol_id, lnum) in lebs:
            start = lebs[(vol_id, lnum)][1]
            out.write(data[start:start + leb_size])
        else:
            out.write(b"\xff" * leb_size)


main()
