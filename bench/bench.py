#!/usr/bin/env python3
"""The benchmark of issue 11; bench/run.sh sets it up and runs it (see README.md, "Benchmark").

Builds its inputs from a fixed seed, builds the chains with the real `snapshot` tool, boots the
release PID 1 as PID 1 of a PID + mount namespace over a squashfs root, and runs the anchors on
the same payload bytes in the same namespace wrapper on tmpfs. CPU time (user + sys of the whole
child tree, getrusage RUSAGE_CHILDREN) is the main figure; every figure is a median with its
min-max over the rounds, and every ratio is taken round by round (pair by pair) before its median.
It prints one markdown table at the end and writes it to --out. It asserts no time: it fails only
when something does not work (a boot that does not replay the chain, an anchor that fails).
"""
import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import time

ERASE = 65536
SEED = 11
MIB = 1 << 20
KIB = 1 << 10
EPOCH = 1700000000  # every mtime in the generated trees: payload bytes are reproducible
INIT = """#!/bin/busybox sh
echo TARGET-RAN
for f in {cg}/cg.out.*; do
    [ -f "$f" ] && /bin/busybox grep -E '^(summary|totals):' "$f" | /bin/busybox sed "s|^|CALLGRIND |"
done
exit 0
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, capture_output=True,
                          **kw).stdout


# ----------------------------------------------------------------------------------------------
# Inputs: an OpenWrt-like tree from a fixed seed.

WORDS = ("option list config interface wan lan proto static dhcp ipaddr netmask gateway dns "
         "device br-lan ifname eth0 eth1 radio0 radio1 channel auto htmode HE80 country DE "
         "ssid mesh encryption sae key disabled enabled zone forwarding rule src dest target "
         "ACCEPT REJECT DROP name input output forward masq mtu_fix family ipv4 ipv6 port "
         "local function end return if then else require luci uci cursor get set commit "
         "self node neighbour olsrd babeld batman-adv hostname timezone UTC log_size 64 "
         "procd_set_param command respawn start_service stop_service reload_trigger").split()
CONF_DIRS = ["etc/config", "etc/init.d", "etc/uci-defaults", "etc/hotplug.d/iface",
             "usr/lib/lua/luci/controller", "usr/lib/lua/luci/model/cbi", "usr/lib/lua/luci/view",
             "usr/share/rpcd/acl.d", "usr/lib/opkg/info", "www/luci-static/resources",
             "etc/crontabs", "usr/share/ucode/luci"]
BIN_DIRS = ["usr/bin", "usr/sbin", "usr/lib", "lib/modules/6.6.73"]


def text(rnd, size):
    """UCI/Lua-like text: compresses like configuration files (about 4-6x with gzip)."""
    out, n = [], 0
    while n < size:
        k = rnd.randint(2, 6)
        line = "\t" * rnd.randint(0, 2) + " ".join(rnd.choice(WORDS) for _ in range(k))
        if rnd.random() < 0.3:
            line += f" '{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.getrandbits(16):x}'"
        out.append(line + "\n")
        n += len(out[-1])
    return "".join(out)[:size].encode()


class BinaryGen:
    """ELF-like bytes: runs of random bytes (immediates, data), repeats of a small pool of
    "instruction" sequences, and zero padding. gzip gets about 2-3x out of it, like MIPS and
    x86_64 executables."""

    def __init__(self, rnd):
        self.rnd = rnd
        ops = [rnd.randbytes(4) for _ in range(64)]
        self.pool = b"".join(rnd.choice(ops) for _ in range(4096))  # 16 KiB of "code"

    def make(self, size):
        rnd, out, n = self.rnd, [], 0
        while n < size:
            r = rnd.random()
            k = rnd.randint(64, 2048)
            if r < 0.40:
                chunk = rnd.randbytes(k)
            elif r < 0.92:
                at = rnd.randrange(0, len(self.pool) - k)
                chunk = self.pool[at:at + k]
            else:
                chunk = bytes(k)
            out.append(chunk)
            n += len(chunk)
        return b"".join(out)[:size]


class Tree:
    """The upper directories of one chain: snapshot 1 is a base system, each later snapshot a
    delta (new packages, edited configs, deleted files as whiteouts, new symlinks)."""

    def __init__(self, top, total, count, seed):
        self.rnd = random.Random(seed)
        self.bin = BinaryGen(self.rnd)
        self.top, self.total, self.count = top, total, count
        self.files = []  # paths (relative) present in the merged tree so far
        self.stats = {"files": 0, "binaries": 0, "symlinks": 0, "whiteouts": 0, "bytes": 0}

    def write(self, up, rel, data, mode):
        path = os.path.join(up, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self.stats["bytes"] += len(data)

    def build(self):
        shutil.rmtree(self.top, ignore_errors=True)
        ups = []
        if self.count == 1:
            shares = [self.total]
        else:
            base = self.total * 4 // 10
            rest = (self.total - base) // (self.count - 1)
            shares = [base] + [rest] * (self.count - 1)
            shares[-1] += self.total - sum(shares)
        for i, budget in enumerate(shares):
            up = os.path.join(self.top, f"up{i + 1:02}")
            os.makedirs(up)
            self.layer(up, i, budget)
            self.fix_times(up)
            ups.append(up)
        return ups

    def layer(self, up, index, budget):
        rnd, written, new = self.rnd, 0, []
        # Binaries: about 60% of the layer, 100 KiB - 2 MiB each.
        bins = budget * 6 // 10
        while bins >= 100 * KIB:
            size = rnd.randint(100 * KIB, min(2 * MIB, bins))
            if bins - size < 100 * KIB and bins <= 2 * MIB:
                size = bins
            rel = f"{rnd.choice(BIN_DIRS)}/pkg{index}-{self.stats['binaries']}"
            rel += ".ko" if rel.startswith("lib/modules") else ""
            self.write(up, rel, self.bin.make(size), 0o755)
            self.stats["binaries"] += 1
            new.append(rel)
            bins -= size
            written += size
        if index > 0:
            # Edited configuration: rewrite some files of earlier layers.
            for rel in rnd.sample(self.files, min(len(self.files), 8)):
                if written >= budget:
                    break
                size = rnd.randint(200, 3000)
                self.write(up, rel, text(rnd, size), 0o644)
                written += size
            # Deletions: whiteouts (character device 0:0) over files of earlier layers.
            for rel in rnd.sample(self.files, min(len(self.files), 3)):
                path = os.path.join(up, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if os.path.lexists(path):
                    os.unlink(path)
                os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                self.files.remove(rel)
                self.stats["whiteouts"] += 1
        # Small files: configuration, scripts, Lua, package lists; 64 B - 4 KiB, mostly small.
        n = 0
        while written < budget:
            size = min(budget - written, int(rnd.lognormvariate(6.8, 0.9)) + 64, 4096)
            d = rnd.choice(CONF_DIRS)
            rel = f"{d}/f{index}-{n}" + (".lua" if "lua" in d else "")
            mode = 0o755 if d in ("etc/init.d", "etc/uci-defaults") else 0o644
            if d == "etc/config" and rnd.random() < 0.2:
                mode = 0o600
            self.write(up, rel, text(rnd, size), mode)
            new.append(rel)
            written += size
            n += 1
            if d == "etc/init.d" and rnd.random() < 0.5:
                # rc.d links, as OpenWrt's enabled services.
                link = f"etc/rc.d/S{rnd.randint(10, 99)}f{index}-{n}"
                os.makedirs(os.path.join(up, "etc/rc.d"), exist_ok=True)
                os.symlink(f"../init.d/f{index}-{n - 1}", os.path.join(up, link))
                self.stats["symlinks"] += 1
        for k in range(3):
            link = os.path.join(up, f"usr/bin/tool{index}-{k}")
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("../../bin/busybox", link)
            self.stats["symlinks"] += 1
        self.stats["files"] += n
        self.files.extend(new)

    @staticmethod
    def fix_times(up):
        for d, dirs, files in os.walk(up, topdown=False):
            for name in files:
                os.utime(os.path.join(d, name), (EPOCH, EPOCH), follow_symlinks=False)
            for name in dirs:
                os.utime(os.path.join(d, name), (EPOCH, EPOCH), follow_symlinks=False)
        os.utime(up, (EPOCH, EPOCH))


def erased(path, size):
    """An image file as erased flash (0xFF): the tool formats it without questions (a file of
    zeros would be unknown data, which it refuses to erase)."""
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(b"\xff" * MIB)
        f.write(b"\xff" * (size % MIB))


# ----------------------------------------------------------------------------------------------
# Chains, built with the real tool, and their payloads cut out of the image byte for byte.

class Chain:
    def __init__(self, cfg, mib, count, gz):
        self.cfg, self.mib, self.count, self.gz = cfg, mib, count, gz
        self.name = f"{mib}m-{count}s-{'gz' if gz else 'plain'}"
        self.label = f"{mib} MiB, {count} snapshot{'s' if count > 1 else ''}, " + (
            "gzip" if gz else "plain")
        self.dir = os.path.join(cfg.fs, "chains", self.name)

    def build(self, ups, tree_bytes):
        cfg = self.cfg
        os.makedirs(self.dir, exist_ok=True)
        img = os.path.join(self.dir, "chain.img")
        # Room for the payloads (plain tar: data + headers + padding), one erase block of slack
        # per block, and the default back buffer (N/8).
        need = tree_bytes * 13 // 10 + self.count * 2 * ERASE + 2 * MIB
        size = -(-need * 8 // 7 // MIB) * MIB
        erased(img, size)
        tool = [cfg.snapshot, "--device", img, "--erase-size", str(ERASE)]
        sh(tool + ["format"])
        for up in ups:
            sh(tool + ["commit", "--upper", up, "--no-reboot"] + ([] if self.gz else ["--no-compress"]))
        info = json.loads(sh(tool + ["info", "--json"]))
        blocks = info["snapshots"]
        assert len(blocks) == self.count, f"{self.name}: {len(blocks)} blocks on flash"
        self.payloads, self.stored, self.unpacked = [], 0, 0
        with open(img, "rb") as f:
            for i, b in enumerate(blocks):
                f.seek(b["offset"] + 256)
                data = f.read(b["stored_size"])
                assert hashlib.sha256(data).hexdigest() == b["sha256"], "payload hash"
                assert b["compression"] == ("gzip" if self.gz else "none")
                p = os.path.join(self.dir, f"p{i + 1:02}.tar" + (".gz" if self.gz else ""))
                with open(p, "wb") as out:
                    out.write(data)
                self.payloads.append(p)
                self.stored += len(data)
                self.unpacked += b["unpacked_size"]
        self.img, self.size = img, size
        erased(os.path.join(self.dir, "empty.img"), size)
        self.entries = None
        self.rootfs()

    def rootfs(self):
        """The squashfs root: busybox, the stand-in target, the chain and an erased image of
        the same size. Stored without data compression (-noD): reading the chain then costs a
        copy, as reading raw flash does, not a decompression that PID 1 would be charged for."""
        cfg = self.cfg
        root = os.path.join(self.dir, "root")
        for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "etc", cfg.cg.lstrip("/")]:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy(cfg.busybox, os.path.join(root, "bin/busybox"))
        with open(os.path.join(root, "sbin/init"), "w") as f:
            f.write(INIT.format(cg=cfg.cg))
        os.chmod(os.path.join(root, "sbin/init"), 0o755)
        os.link(self.img, os.path.join(root, "chain.img"))
        os.rename(os.path.join(self.dir, "empty.img"), os.path.join(root, "empty.img"))
        self.squashfs = os.path.join(self.dir, "root.squashfs")
        sh(["mksquashfs", root, self.squashfs, "-noappend", "-quiet", "-all-root", "-noD"])
        shutil.rmtree(root)


# ----------------------------------------------------------------------------------------------
# Measuring.

NS = ["unshare", "-m", "-p", "--fork", "--mount-proc", "--propagation", "private"]


def measure(cmd, **kw):
    """Wall and CPU (user + sys of every process below, as each is waited for) of one run."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {cmd}\n{p.stderr[-3000:]}\n{p.stdout[-2000:]}")
    return t1 - t0, cpu, p


def boot(cfg, chain, device, valgrind=None, check=True):
    """snapinit as PID 1 of a new PID + mount namespace over the chain's squashfs root."""
    cmdline = (f"snapinit.root={cfg.mnt} snapinit.log=console snapinit.device=/{device} "
               f"snapinit.erase_size={ERASE}")
    pre = " ".join(valgrind) + " " if valgrind else ""
    script = (f"set -e; mount -t squashfs -o loop,ro {chain.squashfs} {cfg.mnt}; "
              f"exec env SNAPINIT_CMDLINE='{cmdline}' {pre}{cfg.snapinit}")
    wall, cpu, p = measure(NS + ["sh", "-c", script])
    if "TARGET-RAN" not in p.stdout:
        raise SystemExit(f"boot of {chain.name} ({device}) did not reach the target:\n{p.stderr}")
    err = p.stderr
    if device == "chain.img" and check:
        replayed = len(re.findall(r"restored snapshot \d+ from", err))
        bad = re.search(r"chain ends at|failed|rejected|cannot|internal error", err)
        if replayed != chain.count or bad or "root switched to the overlay" not in err:
            raise SystemExit(f"{chain.name}: {replayed} of {chain.count} blocks replayed:\n{err}")
        chain.entries = sum(int(m) for m in re.findall(r"replayed: (\d+) entries", err))
    m = re.search(r"peak RSS (\d+) kB", err)
    return wall, cpu, int(m.group(1)) if m else None, p


def anchor_script(cfg, chain, kind):
    """The anchor's shell commands: extract the chain's payloads in chain order into a tmpfs,
    in the same namespace wrapper as the PID 1 boots."""
    z = "z" if chain.gz else ""
    lines = [f"set -e; mount -t tmpfs tmpfs {cfg.dest}; mount -t tmpfs tmpfs {cfg.tmp}; cd {cfg.dest}"]
    for p in chain.payloads:
        if kind == "gnu":
            lines.append(f"tar -x{z}f {p}")
        elif kind == "busybox":
            lines.append(f"{cfg.busybox} tar -x{z}f {p}")
        elif kind == "fstools":
            # fstools (2014), per block: copy it to /tmp, md5sum it, `tar xzf` it.
            t = f"{cfg.tmp}/snapshot.tar" + (".gz" if chain.gz else "")
            lines.append(f"cp {p} {t}; md5sum {t} >/dev/null; tar -x{z}f {t}; rm {t}")
    return "; ".join(lines)


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def ms(x):
    x *= 1000
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def fig(xs, fmt=ms):
    m, lo, hi = stats(xs)
    return f"{fmt(m)} ({fmt(lo)}–{fmt(hi)})"


def ratio(xs):
    return fig(xs, lambda x: f"{x:.2f}x")


class Series:
    """One comparison: ours and one anchor, measured in the same rounds."""

    def __init__(self, what, inp, anchor):
        self.what, self.inp, self.anchor = what, inp, anchor
        self.ours, self.theirs, self.ours_wall, self.theirs_wall = [], [], [], []

    def add(self, ours, theirs, ours_wall, theirs_wall):
        self.ours.append(ours)
        self.theirs.append(theirs)
        self.ours_wall.append(ours_wall)
        self.theirs_wall.append(theirs_wall)

    def row(self):
        rs = [o / t if t > 0 else float("inf") for o, t in zip(self.ours, self.theirs)]
        wall = f"{ms(statistics.median(self.ours_wall))} / {ms(statistics.median(self.theirs_wall))}"
        return [self.what, self.inp, fig(self.ours), self.anchor, fig(self.theirs), ratio(rs), wall]


# ----------------------------------------------------------------------------------------------

def replay_bench(cfg, chains, rounds):
    kinds = [("gnu", "GNU tar -x{z}f"), ("busybox", "busybox tar -x{z}f"),
             ("fstools", "fstools 2014: cp, md5sum, tar x{z}f")]
    series = {}
    for c in chains:
        z = "z" if c.gz else ""
        inp = (f"{c.label}: {c.tree_stats}, tar {c.unpacked / MIB:.2f} MiB, "
               f"stored {c.stored / MIB:.2f} MiB")
        for k, name in kinds:
            series[c.name, k] = Series("replay (PID 1 − empty-chain boot)", inp,
                                       name.format(z=z) + " (− empty wrapper)")
    rss = {}
    for r in range(-1, rounds):  # round -1 warms the caches and checks that everything works
        log(f"replay: round {r + 1}/{rounds}" if r >= 0 else "replay: warm-up round")
        for c in chains:
            w1, c1, rss1, _ = boot(cfg, c, "chain.img")
            w0, c0, rss0, _ = boot(cfg, c, "empty.img")
            rss[c.name], rss["empty"] = rss1, rss0
            base = anchor_script(cfg, c, "none")  # the wrapper and its mounts, nothing extracted
            bw, bc, _ = measure(NS + ["sh", "-c", base])
            for k, _ in kinds:
                aw, ac, _ = measure(NS + ["sh", "-c", anchor_script(cfg, c, k)])
                if r >= 0:
                    series[c.name, k].add(c1 - c0, ac - bc, w1 - w0, aw - bw)
    return [series[c.name, k] for c in chains for k, _ in kinds], rss


def verify_bench(cfg, plain, gz, rounds):
    tool = lambda c: [cfg.snapshot, "--device", c.img, "--erase-size", str(ERASE), "verify"]
    files = lambda c: " ".join(c.payloads)
    rows = [
        (plain, "sha256sum", f"sha256sum {files(plain)} >/dev/null"),
        (gz, "gzip -dc", f"gzip -dc {files(gz)} >/dev/null"),
        (gz, "sha256sum + gzip -dc", f"sha256sum {files(gz)} >/dev/null; gzip -dc {files(gz)} >/dev/null"),
    ]
    series = []
    for c, name, _ in rows:
        what = "(hash + parse)" if not c.gz else "(hash + inflate + parse)"
        series.append(Series(f"`snapshot verify` {what}", f"{c.label}, stored {c.stored / MIB:.2f} MiB",
                             name))
    for r in range(-1, rounds):
        ours = {c.name: measure(tool(c))[:2] for c in (plain, gz)}  # one run per chain and round
        for s, (c, _, cmd) in zip(series, rows):
            ow, oc = ours[c.name]
            aw, ac, _ = measure(["sh", "-c", cmd])
            if r >= 0:
                s.add(oc, ac, ow, aw)
    return series


def save_bench(cfg, trees, rounds):
    parts = {}
    for mib in (16, 128):
        img = os.path.join(cfg.disk, f"part{mib}.img")
        erased(img, mib * MIB)
        # The same 8 MiB back buffer on both: only the partition's size differs.
        sh([cfg.snapshot, "--device", img, "--erase-size", str(ERASE), "format",
            "--backbuf-blocks", "128"])
        parts[mib] = img
    out = os.path.join(cfg.disk, "anchor.tar")
    cases = []
    for mib, up, tbytes in trees:
        for gz in (True, False):
            if not gz and mib != min(t[0] for t in trees):
                continue  # --no-compress: the small tree only (16 MiB plain fits no 16 MiB partition)
            mode = "gzip" if gz else "--no-compress"
            anchor = ("tar czf + sync FILE" if gz else "tar cf + sync FILE")
            for pmib, img in parts.items():
                s = Series(f"`snapshot save` ({mode})", f"{mib} MiB of changes, {pmib} MiB partition",
                           anchor)
                cases.append((s, up, gz, img))
    for r in range(-1, rounds):
        log(f"save: round {r + 1}/{rounds}" if r >= 0 else "save: warm-up round")
        for i, (s, up, gz, img) in enumerate(cases):
            # A change in every save: an unchanged tree is not written again ("nothing changed
            # since the last save"), and the write is what is measured.
            os.makedirs(os.path.join(up, "etc"), exist_ok=True)
            with open(os.path.join(up, "etc", "bench-round"), "w") as f:
                f.write(f"round {r} case {i}\n")
            cmd = [cfg.snapshot, "--device", img, "--erase-size", str(ERASE), "save", "--upper", up]
            ow, oc, _ = measure(cmd + ([] if gz else ["--no-compress"]))
            aw, ac, _ = measure(["sh", "-c", f"tar c{'z' if gz else ''}f {out} -C {up} . && sync {out}"])
            if r >= 0:
                s.add(oc, ac, ow, aw)
    return [c[0] for c in cases]


def execve_address(path):
    """Where PID 1 calls execve: callgrind dumps its counts right before it (after the exec the
    process is no longer snapinit, and nothing would be written)."""
    syms = subprocess.run(["nm", path], capture_output=True, text=True).stdout
    m = re.search(r"^([0-9a-f]+) T snapinit_execve$", syms, re.M)
    if m:
        return int(m.group(1), 16)
    # Stripped: the function whose first instructions are `mov $0x3b,%eax; syscall`.
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True,
                         text=True).stdout.splitlines()
    for a, b in zip(dis, dis[1:]):
        if re.search(r"mov\s+\$0x3b,%eax$", a) and re.search(r"\ssyscall", b):
            return int(a.split(":")[0], 16)
    return None


def callgrind_ir(cmd, out):
    """Instructions (callgrind's Ir) a run executed in user space, from its output file."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"^summary: (\d+)", open(out).read(), re.M) if os.path.exists(out) else None
    if not m:
        raise SystemExit(f"callgrind wrote no counts: {cmd}\n{p.stderr[-3000:]}")
    return int(m.group(1))


def callgrind_bench(cfg, chains):
    """Instruction counts of the 4 MiB chains; they hardly move on a noisy machine.

    PID 1 runs under valgrind as PID 1, its counts dumped right before its execve. Valgrind 3.19
    (Debian bookworm) does not know openat2, which every replayed entry uses: under it PID 1
    refuses the first entry (ENOSYS) and drops the chain. So PID 1's replay is counted only when
    every block replayed under valgrind; its empty-chain boot (the fixed cost) is always counted.
    The replay path is counted in `snapshot verify` of the same image (the same library code:
    chain walk, SHA-256, inflate, tar parser, replay rules over an in-memory model of the layer)
    minus a verify of an erased image of the same size.
    """
    rows, notes = [], []
    addr = execve_address(cfg.snapinit)
    if addr is None:
        notes.append("PID 1: its execve entry was not found in the binary; not counted")
    vg = ["valgrind", "--tool=callgrind", "--vgdb=no"]
    empty = os.path.join(cfg.fs, "empty-verify.img")

    def pid1(c, dev):
        for f in os.listdir(cfg.cg):
            os.unlink(os.path.join(cfg.cg, f))
        pre = vg + [f"--dump-before=0x{addr:016x}", f"--callgrind-out-file={cfg.cg}/cg.out"]
        _, _, _, p = boot(cfg, c, dev, pre, check=False)
        m = re.search(r"CALLGRIND summary: (\d+)", p.stdout)
        if not m:
            raise SystemExit(f"callgrind wrote no counts for {c.name} {dev}:\n{p.stderr[-3000:]}")
        return int(m.group(1)), p.stderr

    for i, c in enumerate(chains):
        if addr is not None:
            base, _ = pid1(c, "empty.img")
            if i == 0:
                rows.append(("PID 1, whole boot of an empty chain (to its execve)",
                             f"{c.size // MIB} MiB erased image", base, base))
            ir, err = pid1(c, "chain.img")
            replayed = len(re.findall(r"restored snapshot \d+ from", err))
            if replayed == c.count:
                rows.append(("PID 1 replay", f"{c.label} (− the empty-chain boot)", ir - base, ir))
            elif "os error 38" in err or "unhandled amd64-linux syscall" in err:
                notes.append(f"PID 1 replay of {c.label}: not counted: valgrind "
                             f"{cfg.valgrind} cannot run it (a syscall it does not know, ENOSYS: "
                             f"{replayed} of {c.count} blocks replayed)")
            else:
                raise SystemExit(f"PID 1 under valgrind: {replayed} of {c.count} blocks:\n{err}")
        if not os.path.exists(empty):
            erased(empty, c.size)
            sh([cfg.snapshot, "--device", empty, "--erase-size", str(ERASE), "format"])
        ir = {}
        for name, img in (("chain", c.img), ("empty", empty)):
            out = os.path.join(cfg.fs, f"cg-verify-{name}.out")
            ir[name] = callgrind_ir(vg + [f"--callgrind-out-file={out}", cfg.snapshot, "--device",
                                          img, "--erase-size", str(ERASE), "verify"], out)
        rows.append(("`snapshot verify`: walk, SHA-256, " + ("inflate, " if c.gz else "")
                     + "tar parse, replay rules (in-memory layer)",
                     f"{c.label} (− the same on an erased image)", ir["chain"] - ir["empty"],
                     ir["chain"]))
    return rows, notes


# ----------------------------------------------------------------------------------------------

class Cfg:
    pass


def table(cfg, sizes, rss, replay, verify, save, cg, cg_note, started):
    head = ["measure", "input", "ours: ms CPU, median (min–max)", "anchor",
            "anchor: ms CPU, median (min–max)", "ours / anchor, median (min–max)",
            "wall ms, ours / anchor (medians)"]
    rows, last = [], None
    for s in replay + verify + save:
        r = s.row()
        if (r[0], r[1]) == last:
            r[0] = r[1] = "〃"  # same measure, same input, same runs of ours: another anchor
        else:
            last = (r[0], r[1])
        rows.append(r)
    for what, inp, ir, total in cg:
        rows.append([f"instructions (callgrind Ir): {what}", inp, f"{ir:,}", "", "", "",
                     f"whole run {total:,}"])
    for note in cg_note:
        rows.append(["instructions (callgrind Ir)", "", note, "", "", "", ""])
    rows.append(["size, stripped", "snapinit (PID 1)", f"{sizes['snapinit']:,} B", "", "", "",
                 f"{sizes['snapinit'] / KIB:.1f} KiB"])
    rows.append(["size, stripped", "snapshot (tool)", f"{sizes['snapshot']:,} B", "", "", "",
                 f"{sizes['snapshot'] / KIB:.1f} KiB"])
    labels = {c.name: c.label for c in cfg.chains}
    for name, v in sorted(rss.items(), key=lambda kv: kv[0] != "empty"):
        rows.append(["peak RSS, PID 1", "empty chain" if name == "empty" else labels[name],
                     f"{v} kB" if v is not None else "not logged", "", "", "", ""])
    out = [f"# snapinit benchmark ({'quick, ' if cfg.quick else ''}{cfg.rounds} rounds)", ""]
    out.append(f"PID 1: `{cfg.snapinit}`; tool: `{cfg.snapshot}`; {cfg.rev}. "
               f"{cfg.machine}. Ran {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}"
               f" in {time.time() - started:.0f} s.")
    out.append("")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in rows:
        out.append("| " + " | ".join(x.replace("|", "\\|") for x in r) + " |")
    out.append("")
    out.append(NOTES.format(rounds=cfg.rounds, perf=cfg.perf))
    return "\n".join(out)


NOTES = """\
How: CPU = user + sys of the whole process tree (getrusage RUSAGE_CHILDREN), in ms; each ratio is
taken round by round, then its median (min–max) over the {rounds} rounds; 〃 = the same runs of
ours as the row above, against another anchor. Wall times are medians of the same differences and
only indicative on a busy machine (the load at the start is in the header). Replay: the release PID 1 as PID 1 of `unshare -m -p
--fork --mount-proc` over a squashfs root holding the chain (`snapinit.device=/chain.img`, stored
uncompressed, -noD: reading it is a copy, as reading raw flash is), minus a boot of the same root
from an erased image of the same size; the anchors extract the same payload bytes, cut out of that
image, in chain order, in the same wrapper onto a tmpfs, minus that wrapper extracting nothing. The
fstools pipeline (per block: cp to /tmp, md5sum, GNU tar) uses `tar xf` on plain chains (fstools
only knew gzip). Verify: `snapshot verify` of the chain image against the anchor on the stored
payload files (all on tmpfs). Save: the same upper directory every round, the images and the
anchor's archive on disk, the same 8 MiB back buffer on both partitions. Instructions: valgrind's
callgrind (user-space instructions only), which offers no SHA-NI to the program it runs (its CPUID
says no), so they count the portable SHA-256 path; PID 1 runs under valgrind as PID 1, counted up
to its execve. Valgrind 3.19 does not know openat2, with which PID 1 creates every entry: where it
cannot replay the chain under valgrind the table says so, and `snapshot verify` counts the replay
path (the same library code: chain walk, SHA-256, inflate, tar parser, replay rules, over an
in-memory layer instead of tmpfs). {perf}"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--work", required=True)
    ap.add_argument("--snapinit", required=True)
    ap.add_argument("--snapshot", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rev", default="")
    a = ap.parse_args()
    started = time.time()
    cfg = Cfg()
    cfg.quick, cfg.rounds = a.quick, a.rounds or (3 if a.quick else 11)
    cfg.snapinit, cfg.snapshot, cfg.rev = a.snapinit, a.snapshot, a.rev
    cfg.busybox = "/bin/busybox"  # static: it is copied into the squashfs root
    cfg.work = a.work
    cfg.fs = os.path.join(a.work, "fs")      # tmpfs: trees, chains, payloads, squashfs roots
    cfg.disk = os.path.join(a.work, "disk")  # disk: the save benchmark's images
    cfg.mnt, cfg.dest, cfg.tmp = (os.path.join(a.work, d) for d in ("mnt", "dest", "tmp"))
    cfg.cg = os.path.join(cfg.fs, "cg")
    for d in (cfg.fs, cfg.disk, cfg.mnt, cfg.dest, cfg.tmp):
        os.makedirs(d, exist_ok=True)
    sh(["mount", "-t", "tmpfs", "-o", "size=4g", "bench", cfg.fs])  # in run.sh's own mount ns
    os.makedirs(cfg.cg)
    model = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    cfg.machine = (f"{model.group(1) if model else '?'}, {os.cpu_count()} CPUs, "
                   f"Linux {os.uname().release}, load {os.getloadavg()[0]:.1f} at start")

    sizes = {}
    for k in ("snapinit", "snapshot"):
        p = os.path.join(a.work, k + ".stripped")
        sh(["strip", "-o", p, getattr(cfg, k)])
        sizes[k] = os.path.getsize(p)

    # The chains: 1/4/16 MiB at 5 snapshots, and 1/5/20 snapshots at 4 MiB; plain and gzip.
    # Quick (CI): every kind of measure, on the small shapes only.
    shapes = [(1, 5), (4, 5)] if cfg.quick else [(1, 5), (4, 5), (16, 5), (4, 1), (4, 20)]
    cfg.chains = []
    for mib, count in shapes:
        log(f"inputs: {mib} MiB in {count} snapshot(s)")
        t = Tree(os.path.join(cfg.fs, "trees", f"{mib}m-{count}s"), mib * MIB, count,
                 SEED * 1000 + mib * 100 + count)
        ups = t.build()
        st = t.stats
        desc = (f"{st['files']} small files, {st['binaries']} binaries, {st['symlinks']} symlinks, "
                f"{st['whiteouts']} whiteouts")
        for gz in (False, True):
            c = Chain(cfg, mib, count, gz)
            c.build(ups, st["bytes"])
            c.tree_stats = desc
            cfg.chains.append(c)
        shutil.rmtree(t.top)
    by = {c.name: c for c in cfg.chains}

    log(f"[{time.time() - started:.0f} s] replay")
    replay, rss = replay_bench(cfg, cfg.chains, cfg.rounds)
    log(f"[{time.time() - started:.0f} s] verify")
    big = "4m-5s" if cfg.quick else "16m-5s"
    verify = verify_bench(cfg, by[big + "-plain"], by[big + "-gz"], cfg.rounds)
    log(f"[{time.time() - started:.0f} s] save")
    trees = []
    for mib in (1,) if cfg.quick else (1, 16):
        t = Tree(os.path.join(cfg.disk, f"save{mib}"), mib * MIB, 1, SEED * 1000 + mib)
        trees.append((mib, t.build()[0], t.stats["bytes"]))
    save = save_bench(cfg, trees, cfg.rounds)
    log(f"[{time.time() - started:.0f} s] callgrind")
    cfg.valgrind = sh(["valgrind", "--version"], text=True).strip().replace("valgrind-", "")
    cg, cg_note = callgrind_bench(cfg, [by["4m-5s-plain"], by["4m-5s-gz"]])
    perf = shutil.which("perf") and subprocess.run(
        ["perf", "stat", "-x,", "-e", "instructions", "true"], capture_output=True, text=True)
    cfg.perf = ""
    if not perf or perf.returncode != 0 or re.search("not supported|not counted", perf.stderr):
        cfg.perf = "(`perf stat -e instructions` does not count on this machine.)"

    log(f"[{time.time() - started:.0f} s] done")
    md = table(cfg, sizes, rss, replay, verify, save, cg, cg_note, started)
    print(md)
    with open(a.out, "w") as f:
        f.write(md + "\n")
    sh(["umount", cfg.fs])


if __name__ == "__main__":
    main()
