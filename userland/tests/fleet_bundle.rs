//! Signed bundles end to end against image files: usign keys and signatures cross-checked with
//! Debian's `signify-openbsd` both ways, k-of-m trust, and every refusal of `fleet apply`
//! leaving the image byte-identical (each with its own exit code).

mod cli_common;

use cli_common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SIGNIFY: &str = "signify-openbsd";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn signify(args: &[&str]) -> std::process::Output {
    let o = Command::new(SIGNIFY)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("{SIGNIFY} cannot run ({e}): `apt-get install signify-openbsd` (scripts/test.sh does)")
        });
    o
}

/// `snapshot` without a device.
fn tool(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run snapshot")
}

fn tool_ok(args: &[&str]) -> String {
    let o = tool(args);
    assert!(o.status.success(), "snapshot {args:?}:\n{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Keys {
    /// Made by signify-openbsd.
    a_sec: PathBuf,
    /// Made by `snapshot bundle keygen`.
    b_sec: PathBuf,
    /// Trusted by no unit.
    rogue_sec: PathBuf,
    /// keys.d with a and b, each file named by key number.
    dir: PathBuf,
}

fn keys(root: &Path) -> Keys {
    let a_pub = root.join("a.pub");
    let a_sec = root.join("a.sec");
    let o = signify(&[
        "-G",
        "-n",
        "-c",
        "signify key",
        "-p",
        s(&a_pub),
        "-s",
        s(&a_sec),
    ]);
    assert!(o.status.success(), "signify -G: {}", show(&o));
    tool_ok(&["bundle", "keygen", s(&root.join("b"))]);
    tool_ok(&["bundle", "keygen", s(&root.join("rogue"))]);
    let dir = root.join("keys.d");
    fs::create_dir_all(&dir).expect("keys.d");
    for p in [a_pub, root.join("b.pub")] {
        let fp = tool_ok(&["bundle", "fingerprint", s(&p)]);
        fs::copy(&p, dir.join(fp.trim())).expect("install key");
    }
    Keys {
        a_sec,
        b_sec: root.join("b.sec"),
        rogue_sec: root.join("rogue.sec"),
        dir,
    }
}

#[test]
fn usign_signatures_cross_check_with_signify() {
    let tmp = scratch();
    let d = tmp.path();
    let k = keys(d);
    let msg = d.join("msg");
    fs::write(&msg, b"a channel manifest\n").expect("msg");
    // Ours, checked by signify.
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&msg)]);
    let o = signify(&[
        "-V",
        "-p",
        s(&d.join("b.pub")),
        "-x",
        s(&d.join("msg.sig")),
        "-m",
        s(&msg),
    ]);
    assert!(
        o.status.success(),
        "signify rejects our signature: {}",
        show(&o)
    );
    // A tampered message: signify must refuse it too (the check can fail).
    let bad = d.join("bad");
    fs::write(&bad, b"a channel manifesT\n").expect("bad");
    let o = signify(&[
        "-V",
        "-p",
        s(&d.join("b.pub")),
        "-x",
        s(&d.join("msg.sig")),
        "-m",
        s(&bad),
    ]);
    assert!(!o.status.success(), "signify took a tampered message");
    // signify's, checked by ours (through a bundle, below) and its secret key read by ours.
    let msg2 = d.join("msg2");
    fs::write(&msg2, b"other\n").expect("msg2");
    tool_ok(&["bundle", "sign", "--key", s(&k.a_sec), s(&msg2)]);
    let o = signify(&[
        "-V",
        "-p",
        s(&d.join("a.pub")),
        "-x",
        s(&d.join("msg2.sig")),
        "-m",
        s(&msg2),
    ]);
    assert!(
        o.status.success(),
        "signify rejects a signature by its own key made by us: {}",
        show(&o)
    );
}

fn upper(dir: &Path, name: &str, content: &str) -> PathBuf {
    let u = dir.join(name);
    fs::create_dir_all(u.join("etc/config")).expect("mkdir");
    fs::write(u.join("etc/config/network"), content).expect("write");
    u
}

/// A formatted image with one confirmed snapshot.
fn unit(dir: &Path, name: &str, base_upper: &Path) -> PathBuf {
    let img = image(dir, name, 1 << 20);
    ok(&img, &["--erase-size", "4096", "format"]);
    ok(
        &img,
        &[
            "--erase-size",
            "4096",
            "commit",
            "--upper",
            s(base_upper),
            "--no-reboot",
        ],
    );
    img
}

fn apply(img: &Path, bundle: &Path, keys: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "--erase-size",
        "4096",
        "fleet",
        "apply",
        s(bundle),
        "--keys",
        s(keys),
        "--no-reboot",
    ];
    a.extend_from_slice(extra);
    run(img, &a)
}

/// `fleet apply` refuses with `code` and leaves the image byte-identical.
fn refused(img: &Path, bundle: &Path, keys: &Path, extra: &[&str], code: i32, why: &str) {
    let before = fs::read(img).expect("read image");
    let o = apply(img, bundle, keys, extra);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{why}: wrong exit code:\n{}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused"),
        "{why}: no refusal line:\n{}",
        show(&o)
    );
    assert!(
        fs::read(img).expect("read image") == before,
        "{why}: the image changed"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn bundles_apply_on_trial_and_refusals_leave_flash_untouched() {
    let tmp = scratch();
    let d = tmp.path();
    let k = keys(d);
    let base = upper(d, "base", "base\n");
    let img1 = unit(d, "unit1.img", &base);
    let img2 = unit(d, "unit2.img", &base);
    let head = tool_ok(&[
        "--device",
        s(&img1),
        "--erase-size",
        "4096",
        "bundle",
        "head",
    ]);
    let head2 = tool_ok(&[
        "--device",
        s(&img2),
        "--erase-size",
        "4096",
        "bundle",
        "head",
    ]);
    assert_eq!(
        head, head2,
        "two units with the same snapshots have one chain id"
    );
    // Something that is not a chain has no chain id: read as the empty chain's, a bundle made
    // on the wrong file would fit every freshly formatted unit instead.
    let junk = d.join("junk.img");
    fs::write(&junk, vec![0x5a; 256 * 1024]).expect("junk");
    for args in [
        vec![
            "--device",
            s(&junk),
            "--erase-size",
            "4096",
            "bundle",
            "head",
        ],
        vec![
            "--erase-size",
            "4096",
            "bundle",
            "create",
            "--base",
            s(&junk),
            "--upper",
            s(&base),
            "-o",
            s(&d.join("bundle-junk")),
            "--bundle-version",
            "vj",
        ],
    ] {
        let o = std::process::Command::new(bin())
            .args(&args)
            .output()
            .expect("run snapshot");
        // Refused as no chain (5) or as data a chain does not show (13).
        assert!(
            matches!(o.status.code(), Some(5 | 13)),
            "{args:?}: {}",
            show(&o)
        );
    }
    assert!(!d.join("bundle-junk").exists(), "a bundle on no chain");

    let new = upper(d, "v2", "v2 config\n");
    let good = d.join("bundle-v2");
    tool_ok(&[
        "--erase-size",
        "4096",
        "bundle",
        "create",
        "--base",
        s(&img1),
        "--upper",
        s(&new),
        "-o",
        s(&good),
        "--bundle-version",
        "v2",
        "--note",
        "new network config",
        "--trial",
        "2",
    ]);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(good.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(m["apiVersion"], "snapinit.fleet/v1");
    assert_eq!(m["kind"], "Bundle");
    assert_eq!(m["spec"]["base"], head.trim());
    assert_eq!(m["spec"]["trialBoots"], 2);

    // Unsigned: refused.
    refused(&img1, &good, &k.dir, &[], 19, "unsigned");
    // Signed by a key no unit trusts: refused.
    let rogue = d.join("bundle-rogue");
    copy_dir(&good, &rogue);
    tool_ok(&["bundle", "sign", "--key", s(&k.rogue_sec), s(&rogue)]);
    refused(&img1, &rogue, &k.dir, &[], 19, "untrusted key");
    // One trusted signature (signify's key, signed by signify itself) where two are required.
    let o = signify(&[
        "-S",
        "-s",
        s(&k.a_sec),
        "-m",
        s(&good.join("manifest.json")),
        "-x",
        s(&good.join("manifest.json.sig")),
    ]);
    assert!(o.status.success(), "signify -S: {}", show(&o));
    tool_ok(&["bundle", "verify", s(&good), "--keys", s(&k.dir)]);
    refused(&img1, &good, &k.dir, &["--min-sigs", "2"], 19, "1 of 2");
    // The same key twice is still one.
    let twice = d.join("bundle-twice");
    copy_dir(&good, &twice);
    tool_ok(&["bundle", "sign", "--key", s(&k.a_sec), s(&twice)]);
    refused(
        &img1,
        &twice,
        &k.dir,
        &["--min-sigs", "2"],
        19,
        "one key twice",
    );
    // Second key: 2 of 2.
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&good)]);
    tool_ok(&[
        "bundle",
        "verify",
        s(&good),
        "--keys",
        s(&k.dir),
        "--min-sigs",
        "2",
    ]);

    // A damaged signature.
    let badsig = d.join("bundle-badsig");
    copy_dir(&good, &badsig);
    let sig = fs::read_to_string(badsig.join("manifest.json.sig")).expect("sig");
    let mut lines: Vec<String> = sig.lines().map(String::from).collect();
    let b64 = &mut lines[1];
    let flip = if b64.as_bytes()[20] == b'A' { "B" } else { "A" };
    b64.replace_range(20..21, flip);
    fs::write(badsig.join("manifest.json.sig"), lines.join("\n") + "\n").expect("write sig");
    refused(
        &img1,
        &badsig,
        &k.dir,
        &["--min-sigs", "2"],
        19,
        "bad signature",
    );

    // A tampered payload (same size): the manifest's hash no longer matches.
    let tampered = d.join("bundle-tampered");
    copy_dir(&good, &tampered);
    let mut p = fs::read(tampered.join("payload.tar.gz")).expect("payload");
    let mid = p.len() / 2;
    p[mid] ^= 0x40;
    fs::write(tampered.join("payload.tar.gz"), p).expect("write");
    refused(
        &img1,
        &tampered,
        &k.dir,
        &["--min-sigs", "2"],
        20,
        "tampered payload",
    );

    // A payload with bytes appended: a mismatch, not a size-limit refusal.
    let longer = d.join("bundle-longer");
    copy_dir(&good, &longer);
    let mut p = fs::read(longer.join("payload.tar.gz")).expect("payload");
    p.extend_from_slice(b"trailing junk");
    fs::write(longer.join("payload.tar.gz"), p).expect("write");
    refused(
        &img1,
        &longer,
        &k.dir,
        &["--min-sigs", "2"],
        20,
        "longer payload",
    );

    // A manifest edited after signing.
    let edited = d.join("bundle-edited");
    copy_dir(&good, &edited);
    let text = fs::read_to_string(edited.join("manifest.json")).expect("m");
    fs::write(
        edited.join("manifest.json"),
        text.replace("\"trialBoots\": 2", "\"trialBoots\": 16"),
    )
    .expect("write");
    refused(
        &img1,
        &edited,
        &k.dir,
        &[],
        19,
        "manifest edited after signing",
    );

    // Too large for the unit's limit.
    refused(
        &img1,
        &good,
        &k.dir,
        &["--max-size", "100"],
        22,
        "oversized",
    );

    // Wrong base: a unit whose chain differs.
    let other = upper(d, "other", "other\n");
    let img3 = unit(d, "unit3.img", &other);
    refused(&img3, &good, &k.dir, &[], 21, "wrong base");

    // An unknown apiVersion, properly signed.
    let future = d.join("bundle-future");
    copy_dir(&good, &future);
    fs::remove_file(future.join("manifest.json.sig")).expect("rm sig");
    let text = fs::read_to_string(future.join("manifest.json")).expect("m");
    fs::write(
        future.join("manifest.json"),
        text.replace("snapinit.fleet/v1", "snapinit.fleet/v9"),
    )
    .expect("write");
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&future)]);
    refused(&img1, &future, &k.dir, &[], 23, "unknown apiVersion");

    // 16 trial boots, properly signed: a header records at most 15 (docs/FORMAT.md).
    let sixteen = d.join("bundle-16-boots");
    copy_dir(&good, &sixteen);
    fs::remove_file(sixteen.join("manifest.json.sig")).expect("rm sig");
    let text = fs::read_to_string(sixteen.join("manifest.json")).expect("m");
    fs::write(
        sixteen.join("manifest.json"),
        text.replace("\"trialBoots\": 2", "\"trialBoots\": 16"),
    )
    .expect("write");
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&sixteen)]);
    refused(&img1, &sixteen, &k.dir, &[], 23, "16 trial boots");

    // The good bundle lands on both units, on trial, with the same content.
    for img in [&img1, &img2] {
        let o = apply(img, &good, &k.dir, &["--min-sigs", "2"]);
        assert!(o.status.success(), "apply: {}", show(&o));
        let i = info(img);
        let snaps = i["snapshots"].as_array().expect("snapshots");
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[1]["trial_budget"], 2);
        assert_eq!(snaps[1]["confirmed"], false);
        // Applied once, the base no longer matches: a second apply is refused.
        refused(
            img,
            &good,
            &k.dir,
            &["--min-sigs", "2"],
            21,
            "applied twice",
        );
    }
    let h1 = tool_ok(&[
        "--device",
        s(&img1),
        "--erase-size",
        "4096",
        "bundle",
        "head",
    ]);
    let h2 = tool_ok(&[
        "--device",
        s(&img2),
        "--erase-size",
        "4096",
        "bundle",
        "head",
    ]);
    assert_eq!(h1, h2, "both units hold the same chain after the bundle");
    assert_ne!(h1, head);
    for (n, img) in [(1, &img1), (2, &img2)] {
        let out = d.join(format!("x{n}"));
        ok(img, &["--erase-size", "4096", "extract", "2", s(&out)]);
        assert_eq!(
            fs::read(out.join("etc/config/network")).expect("extracted"),
            b"v2 config\n"
        );
    }
}

/// A bundle whose payload unpacks to more file data than a block of its size may (zeros
/// compress about 1000x): `bundle create` refuses to write it, and a unit refuses one made by
/// hand and properly signed, with flash unchanged. The bound is the smallest erase size's, so
/// a bundle that passes boots on every geometry.
#[test]
fn a_bundle_past_the_data_bound_is_neither_created_nor_applied() {
    let tmp = scratch();
    let d = tmp.path();
    let k = keys(d);
    let base = upper(d, "base", "base\n");
    let img = unit(d, "unit.img", &base);
    let zeros = upper(d, "zeros", "v2\n");
    fs::write(zeros.join("zeros"), vec![0u8; 4 << 20]).expect("write");
    let out = d.join("bundle-zeros");
    let o = std::process::Command::new(bin())
        .args(["--erase-size", "4096", "bundle", "create", "--base"])
        .arg(&img)
        .arg("--upper")
        .arg(&zeros)
        .arg("-o")
        .arg(&out)
        .args(["--bundle-version", "z"])
        .output()
        .expect("run snapshot");
    assert_eq!(o.status.code(), Some(22), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the file data in payload payload.tar.gz (at most 64x its size) is"),
        "{}",
        show(&o)
    );
    assert!(!out.exists(), "a bundle was written");

    // The same payload, made by GNU tar, in a signed manifest that says so truly.
    let good = d.join("bundle-good");
    tool_ok(&[
        "--erase-size",
        "4096",
        "bundle",
        "create",
        "--base",
        s(&img),
        "--upper",
        s(&upper(d, "v2", "v2\n")),
        "-o",
        s(&good),
        "--bundle-version",
        "v2",
    ]);
    let tar_of = |pipe: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} --format=pax -cf - . {pipe}",
                zeros.display()
            ))
            .output()
            .expect("tar");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let payload = tar_of("| gzip -9c");
    let unpacked: u64 = String::from_utf8_lossy(&tar_of("| wc -c"))
        .trim()
        .parse()
        .expect("wc");
    // `good` with `payload` and `unpacked_size`, signed again.
    let resigned = |name: &str, payload: &[u8], unpacked_size: u64| {
        let dir = d.join(name);
        copy_dir(&good, &dir);
        let mut m: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("manifest"))
                .expect("json");
        m["spec"]["payload"]["sha256"] = snapshot::fleet::bundle::sha256_hex(payload).into();
        m["spec"]["payload"]["size"] = payload.len().into();
        m["spec"]["payload"]["unpackedSize"] = unpacked_size.into();
        fs::write(dir.join("payload.tar.gz"), payload).expect("write");
        fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec_pretty(&m).expect("json"),
        )
        .expect("write");
        let _ = fs::remove_file(dir.join("manifest.json.sig"));
        tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&dir)]);
        dir
    };
    let bomb = resigned("bundle-bomb", &payload, unpacked);
    refused(&img, &bomb, &k.dir, &[], 22, "file data past the bound");
    // The pass that walks the payload counts its tar bytes too: a manifest one byte off is a
    // mismatch.
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(good.join("manifest.json")).expect("manifest"))
            .expect("json");
    let good_size = m["spec"]["payload"]["unpackedSize"]
        .as_u64()
        .expect("unpackedSize");
    let good_payload = fs::read(good.join("payload.tar.gz")).expect("payload");
    let off_by_one = resigned("bundle-off-by-one", &good_payload, good_size + 1);
    refused(
        &img,
        &off_by_one,
        &k.dir,
        &[],
        20,
        "unpackedSize one byte off",
    );
    // The good bundle still applies: the refusal was about the payload alone.
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&good)]);
    let o = apply(&img, &good, &k.dir, &[]);
    assert!(o.status.success(), "apply: {}", show(&o));
}

/// A usign key number is chosen at random, not derived from the key: anyone can relabel their
/// public key with a second number. keys.d then holds one Ed25519 key under two names (a key
/// holder who handed in "two keys", a copy renamed by mistake), and the same signature under
/// each number must still count once toward k (docs/FLEET.md: "distinct trusted keys").
#[test]
fn one_public_key_under_two_key_numbers_counts_once() {
    use snapshot::fleet::sign::{KeyNum, PublicKey, SecretKey};
    let tmp = scratch();
    let d = tmp.path();
    let k = keys(d);
    let base = upper(d, "base", "base\n");
    let img = unit(d, "unit.img", &base);
    let b = d.join("bundle-v2");
    tool_ok(&[
        "--erase-size",
        "4096",
        "bundle",
        "create",
        "--base",
        s(&img),
        "--upper",
        s(&upper(d, "v2", "v2\n")),
        "-o",
        s(&b),
        "--bundle-version",
        "v2",
    ]);
    tool_ok(&["bundle", "sign", "--key", s(&k.b_sec), s(&b)]);
    // Key b again, under another number, in keys.d.
    let alias = KeyNum(*b"\x01alias\x02\x03");
    let mut pk = PublicKey::parse(&fs::read_to_string(d.join("b.pub")).expect("b.pub"))
        .expect("parse b.pub");
    pk.num = alias;
    fs::write(k.dir.join(alias.to_string()), pk.to_file("b again")).expect("install alias");
    // b's signature once more, labelled with the alias number.
    let mut sk = SecretKey::parse(&fs::read_to_string(&k.b_sec).expect("b.sec")).expect("b.sec");
    sk.num = alias;
    let msg = fs::read(b.join("manifest.json")).expect("manifest");
    let mut sig = fs::OpenOptions::new()
        .append(true)
        .open(b.join("manifest.json.sig"))
        .expect("sig");
    std::io::Write::write_all(&mut sig, sk.sign(&msg).as_bytes()).expect("append sig");
    drop(sig);
    tool_ok(&["bundle", "verify", s(&b), "--keys", s(&k.dir)]);
    refused(
        &img,
        &b,
        &k.dir,
        &["--min-sigs", "2"],
        19,
        "one key under two numbers",
    );
    // A really different second key makes it 2 of 2.
    tool_ok(&["bundle", "sign", "--key", s(&k.a_sec), s(&b)]);
    let o = apply(&img, &b, &k.dir, &["--min-sigs", "2"]);
    assert!(o.status.success(), "apply: {}", show(&o));
}

/// `bundle channel` refuses what every unit would refuse, before anything is signed: an
/// expiry so far off that `published` + it does not fit in a u64 (it wrapped below
/// `published`, or panicked) is refused, and no manifest is written.
#[test]
fn a_channel_whose_expiry_overflows_is_refused_not_written() {
    let tmp = scratch();
    let d = tmp.path();
    let root = d.join("mirror");
    tool_ok(&[
        "bundle",
        "create",
        "--base-hash",
        &"0".repeat(64),
        "--upper",
        s(&upper(d, "v2", "v2\n")),
        "-o",
        s(&root.join("bundles/v2")),
        "--bundle-version",
        "v2",
    ]);
    for args in [
        vec!["--expires-days", "1e300"],
        vec!["--published", "18446744073709551615"],
    ] {
        let mut a = vec![
            "bundle",
            "channel",
            "--root",
            s(&root),
            "--channel",
            "stable",
        ];
        a.extend_from_slice(&args);
        a.push("bundles/v2");
        let o = tool(&a);
        assert_eq!(o.status.code(), Some(5), "{args:?}: {}", show(&o));
        assert!(!root.join("stable.json").exists(), "{args:?}: written");
    }
    // A long but representable expiry is fine.
    tool_ok(&[
        "bundle",
        "channel",
        "--root",
        s(&root),
        "--channel",
        "stable",
        "--expires-days",
        "36500",
        "bundles/v2",
    ]);
}

/// `bundle channel` takes each bundle as a directory under `--root`, and a unit fetches it at
/// the entry's `path` relative to its mirror, refusing (23, the whole channel) a path that
/// starts with `/` or holds `..`. A bundle named by its absolute path (it reads as well, as
/// `root.join` of an absolute path is that path) or through `..` is refused here, before a
/// channel that no unit takes is signed and published.
#[test]
fn a_channel_entry_every_unit_would_refuse_is_not_written() {
    let tmp = scratch();
    let d = tmp.path();
    let root = d.join("mirror");
    let bdir = root.join("bundles/v2");
    tool_ok(&[
        "bundle",
        "create",
        "--base-hash",
        &"0".repeat(64),
        "--upper",
        s(&upper(d, "v2", "v2\n")),
        "-o",
        s(&bdir),
        "--bundle-version",
        "v2",
    ]);
    for path in [s(&bdir), "bundles/../bundles/v2"] {
        let o = tool(&[
            "bundle",
            "channel",
            "--root",
            s(&root),
            "--channel",
            "stable",
            path,
        ]);
        assert_eq!(o.status.code(), Some(5), "{path}: {}", show(&o));
        assert!(!root.join("stable.json").exists(), "{path}: written");
    }
    tool_ok(&[
        "bundle",
        "channel",
        "--root",
        s(&root),
        "--channel",
        "stable",
        "bundles/v2/",
    ]);
}
