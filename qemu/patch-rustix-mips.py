#!/usr/bin/env python3
"""Patch a copy of rustix's o32 syscall asm (src/backend/linux_raw/arch/mips.rs)
so that every syscall preserves $at ($1).

Why: the MIPS Linux kernel does not preserve $at across a syscall (its o32
entry saves and restores only v0/v1, a0-a3, t9, gp, sp, ra and the callee-saved
registers; glibc and musl list "$1" as clobbered). Rust reserves $at for the
assembler, so asm! cannot name it as a clobber, yet LLVM's register allocator
does keep values in $at across an asm! block. Seen on malta: snapinit's
read_file() kept from_utf8's result flag in $at across close(), the kernel
returned garbage there, and every /proc file read came back empty. Under
qemu-user (which emulates syscalls without touching $at) the bug is invisible.

The patch saves $at in $v1 ($3, which the kernel restores) around the
`syscall` instruction, under `.set noat`, and declares $3 clobbered.
Blocks with `options(noreturn)` (exit) have no outputs and are left alone.

Second change, build.rs: rustix lists big-endian o32 (mips-unknown-linux-gnu)
as an unsupported ABI for its raw-syscall backend and falls back to libc,
which a no-libc PID 1 cannot link (build.rs and the target cfgs of
Cargo.toml both say so). The backend's 32-bit register pairs for
64-bit arguments are already endian-aware (conv.rs hi()/lo()); run-tests.sh
boots the big-endian build on a host-written chain to prove it.

usage: patch-rustix-mips.py RUSTIX_DIR
"""
import re
import sys

build = sys.argv[1] + "/build.rs"
text = open(build).read()
if "snapinit: big-endian o32" not in text:
    old = 'let is_mipseb = (arch == "mips" || arch == "mips32r6") && endian == "big";'
    assert old in text, "rustix build.rs: is_mipseb line not found"
    text = text.replace(old, 'let is_mipseb = false; // snapinit: big-endian o32 uses linux_raw too\n    let _ = &endian;')
    open(build, "w").write(text)
# ... and Cargo.toml's matching target cfgs, which pick linux-raw-sys (raw backend)
# or libc: big-endian is allowed there only for s390x and powerpc.
manifest = sys.argv[1] + "/Cargo.toml"
text = open(manifest).read()
old = 'any(target_arch = "s390x", target_arch = "powerpc")'
if old in text:
    text = text.replace(old, 'any(target_arch = "s390x", target_arch = "powerpc", target_arch = "mips")')
    open(manifest, "w").write(text)

path = sys.argv[1] + "/src/backend/linux_raw/arch/mips.rs"
src = open(path).read()
if "snapinit: $at preserved" in src:
    sys.exit(0)
out = []
pos = 0
count = 0
for m in re.finditer(r"asm!\((.*?)\n\s*\);", src, re.S):
    block = m.group(0)
    if "err" not in block:  # noreturn exit: no outputs allowed
        continue
    new = block.replace(
        '"syscall",', '"move $3, $1", "syscall", "move $1, $3",', 1
    )
    if '".set noat"' not in new:
        new = new.replace('asm!(', 'asm!(\n        ".set noat",', 1)
        new = new.replace('"move $1, $3",', '"move $1, $3", ".set at",', 1)
    new = re.sub(r'(\n(\s*)(in)?lateout\("\$7"[^\n]*err,)',
                 r'\1\n\2lateout("$3" /*$v1: holds $at*/) _,', new, count=1)
    assert new != block and 'lateout("$3"' in new, block
    out.append(src[pos:m.start()])
    out.append(new)
    pos = m.end()
    count += 1
out.append(src[pos:])
text = "// snapinit: $at preserved around every syscall (qemu/patch-rustix-mips.py)\n" + "".join(out)
open(path, "w").write(text)
print(f"patch-rustix-mips.py: {count} syscall blocks patched in {path}", file=sys.stderr)
