#!/bin/sh
# Replay benchmark for the PID 1 binary (a measurement, not a test: it asserts
# nothing about time).
#
# Builds a chain of 3 snapshots + 1 volatile holding FILES small files (1-4
# KiB of config-like text, default 1000 files: about 4 MiB of pax tar), once with
# plain payloads and once gzip'd, then boots the release binary as PID 1 of a
# new PID + mount namespace (as tests/init_boot.rs does) with the chain in a
# file (snapinit.device=). The replay time is the median wall (and CPU) time
# of RUNS boots minus the median of boots of the same root with an empty
# (erased) chain, so the namespace, squashfs mount and exec costs cancel out.
# One more boot per chain logs to /dev/kmsg (BENCH_KMSG=0 skips it: it writes
# about 22 lines into the host's kernel log) and splits the time by the
# kernel's timestamps on snapinit's own lines. The peak RSS is the one
# snapinit logs before it execs the target.
#
# Needs root, unshare, loop devices, mksquashfs, a static busybox, GNU tar,
# gzip, python3 (tests/init_setup.sh installs what is missing).
#
#   tests/bench-replay.sh                  # FILES=1000 RUNS=5
#   FILES=2000 RUNS=9 tests/bench-replay.sh
#   SNAPINIT=path/to/snapinit tests/bench-replay.sh   # skip the build
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
sh "$here/tests/init_setup.sh"
if [ -z "${SNAPINIT:-}" ]; then
    target=${CARGO_TARGET_DIR:-$here/target}
    (cd "$here" && cargo build --release -q -p snapinit --bin snapinit)
    SNAPINIT=$target/release/snapinit
fi
work=${BENCH_DIR:-$(mktemp -d /tmp/snapinit-bench.XXXXXX)}
mkdir -p "$work"
export SNAPINIT FILES="${FILES:-1000}" RUNS="${RUNS:-5}" WORK="$work"
strip -o "$work/snapinit.stripped" "$SNAPINIT"
echo "binary: $SNAPINIT ($(stat -c %s "$work/snapinit.stripped") bytes stripped)"
python3 - <<'EOF'
import hashlib, os, resource, random, re, shutil, statistics, struct, subprocess, time

SNAPINIT, WORK = os.environ["SNAPINIT"], os.environ["WORK"]
FILES, RUNS = int(os.environ["FILES"]), int(os.environ["RUNS"])
ERASE, BLOCKS = 65536, 160  # 10 MiB image; back buffer N/8 = 20 blocks
BACKBUF = BLOCKS // 8

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, **kw).stdout

def tree(name, files, seed):
    """`files` files of 1-4 KiB of config-like text under 20 directories."""
    rnd = random.Random(seed)
    top = os.path.join(WORK, name)
    shutil.rmtree(top, ignore_errors=True)
    for i in range(files):
        d = os.path.join(top, "etc", f"d{i % 20:02}")
        os.makedirs(d, exist_ok=True)
        size = rnd.randint(1024, 4096)
        lines, n = [], 0
        while n < size:
            line = f"option key{rnd.randint(0, 999)} 'value {rnd.getrandbits(32):08x}'\n"
            lines.append(line)
            n += len(line)
        with open(os.path.join(d, f"{name}-{i}.conf"), "w") as f:
            f.write("".join(lines)[:size])
    return top

def payload(top, gz):
    tar = sh(f"tar -C {top} --format=pax --sort=name -cf - .")
    return (sh("gzip -6c", input=tar) if gz else tar), len(tar)

def seal(kind, gz, seq, gen, data, prev):
    b = bytearray(0xC0)
    b[0:8] = b"SNAPINIT"
    struct.pack_into("<HBBIHHIQQQQ", b, 8, 1, kind, 1 if gz else 0, ERASE, BACKBUF, 0,
                     seq, gen, len(data), 0, 0)
    b[0x38:0x40] = struct.pack("<Q", gen)
    b[0x40:0x60] = hashlib.sha256(data).digest()
    b[0x60:0x80] = prev
    b[0xA0:0xC0] = hashlib.sha256(bytes(b[:0xA0])).digest()
    return bytes(b), bytes(b[0xA0:0xC0])

def image(payloads):
    """Snapshots from offset 0, the volatile in the slot after them."""
    img = bytearray(b"\xff" * (ERASE * BLOCKS))
    at, prev, gen = 0, bytes(32), 0
    for i, (data, gz) in enumerate(payloads):
        snap = i < len(payloads) - 1
        gen += 1
        hdr, h = seal(1 if snap else 2, gz, i + 1 if snap else i, gen, data, prev)
        img[at:at + len(hdr)] = hdr
        img[at + 256:at + 256 + len(data)] = data
        if snap:
            prev = h
            at += -(-(256 + len(data)) // ERASE) * ERASE
    assert at + 256 + len(payloads[-1][0]) <= (BLOCKS - BACKBUF) * ERASE, "image too small"
    return bytes(img)

INIT = "#!/bin/busybox sh\necho TARGET-RAN\n"

def rootfs(name, chain):
    root = os.path.join(WORK, name)
    shutil.rmtree(root, ignore_errors=True)
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "etc"]:
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    with open(os.path.join(root, "sbin/init"), "w") as f:
        f.write(INIT)
    os.chmod(os.path.join(root, "sbin/init"), 0o755)
    with open(os.path.join(root, "chain.img"), "wb") as f:
        f.write(chain)
    img = root + ".squashfs"
    sh(f"mksquashfs {root} {img} -noappend -quiet -all-root")
    return img

def boot(img, log="console"):
    mnt = os.path.join(WORK, "mnt")
    os.makedirs(mnt, exist_ok=True)
    script = (f"set -e; mount -t squashfs -o loop,ro {img} {mnt}; exec env "
              f"SNAPINIT_CMDLINE='snapinit.root={mnt} snapinit.log={log} "
              f"snapinit.device=/chain.img snapinit.erase_size={ERASE}' {SNAPINIT}")
    t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["unshare", "-m", "-p", "--fork", "--mount-proc", "--propagation",
                          "private", "sh", "-c", script], capture_output=True, text=True)
    dt = time.perf_counter() - t
    r2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r2.ru_utime - r.ru_utime) + (r2.ru_stime - r.ru_stime)
    if out.returncode != 0 or "TARGET-RAN" not in out.stdout:
        raise SystemExit(f"boot failed ({out.returncode}):\n{out.stderr}\n{out.stdout}")
    return dt, cpu, out.stderr, out.stdout

def kmsg_replay(img):
    """One boot logging to /dev/kmsg: snapinit's lines with the kernel's
    microsecond timestamps. Returns (replay ms, chain read+verify ms) from
    `chain device` to the `volatile candidate` line and to the `chain:` line."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(fd, 0, os.SEEK_END)
    boot(img, "kmsg")
    recs = []
    while True:
        try:
            rec = os.read(fd, 8192).decode(errors="replace")
        except BlockingIOError:
            break
        head, _, text = rec.partition(";")
        if text.startswith("snapinit: "):
            recs.append((int(head.split(",")[2]), text.splitlines()[0]))
    os.close(fd)
    t = lambda key: next(us for us, line in recs if key in line)
    start = t("snapinit: chain device")
    return (t("saved changes are in place") - start) / 1000, (t("snapinit: chain:") - start) / 1000

def median_boot(img):
    boot(img)  # warm the page cache
    runs = [boot(img) for _ in range(RUNS)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    return wall, cpu, runs[-1][2], runs[-1][3]

split = [FILES * 4 // 10, FILES * 3 // 10, FILES * 2 // 10]
split.append(FILES - sum(split))
trees = [tree(n, k, i) for i, (n, k) in enumerate(zip(["s1", "s2", "s3", "vol"], split))]

base, base_cpu, base_log, _ = median_boot(rootfs("root-empty", b"\xff" * (ERASE * BLOCKS)))
print(f"baseline (empty chain): wall {base * 1000:.1f} ms, cpu {base_cpu * 1000:.1f} ms "
      f"(medians of {RUNS} boots)")
for gz in (False, True):
    parts = [payload(t, gz) for t in trees]
    stored = sum(len(p[0]) for p in parts)
    tar = sum(p[1] for p in parts)
    img = rootfs("root-gz" if gz else "root-plain", image([(p[0], gz) for p in parts]))
    wall, cpu, log, out = median_boot(img)
    rss = re.search(r"peak RSS (.*)", log)
    entries = sum(int(m) for m in re.findall(r"\s(\d+) entries", log))
    if "saved changes are in place" not in log or "replay failed" in log:
        raise SystemExit(f"replay did not complete:\n{log}")
    kind = "gzip " if gz else "plain"
    print(f"{kind}: {FILES} files, {entries} tar entries, tar {tar / 2**20:.2f} MiB, "
          f"stored {stored / 2**20:.2f} MiB\n"
          f"       boot wall {wall * 1000:.1f} ms, cpu {cpu * 1000:.1f} ms; "
          f"replay ~{(wall - base) * 1000:.1f} ms wall, ~{(cpu - base_cpu) * 1000:.1f} ms cpu; "
          f"peak RSS {rss.group(1) if rss else '?'}")
    if os.environ.get("BENCH_KMSG", "1") == "1":
        # Writes one boot's log (about 22 lines) to the host's kernel log.
        replay, verify = kmsg_replay(img)
        print(f"       snapinit's kmsg timestamps (one boot): read + verify the chain "
              f"{verify:.1f} ms, replay {replay - verify:.1f} ms, total {replay:.1f} ms")
    if os.environ.get("BENCH_LOG"):
        print(log, out)
print(f"empty-chain peak RSS: {re.search(r'peak RSS (.*)', base_log).group(1)}")
EOF
[ -n "${BENCH_DIR:-}" ] || rm -rf "$work"
