//! What runs on a build host or an admin's machine, never on a unit (cargo feature
//! `fleet-admin`): `bundle create|sign|keygen|channel` and the fleet-wide views, `fleet status
//! --mqtt` and `fleet report`.

use super::super::error::CliError;
use super::super::{ops, tree, Ctx};
use super::{
    failures, io_err, read_limited, sig_path, unix_now, view_id, with_broker, with_suffix,
    write_file, MqttArgs, DEFAULT_KEYS,
};
use snapinit::header::Compression;
use snapshot::fleet::bundle::{
    hex, sha256_hex, unhex32, BundleError, BundleManifest, BundleSpec, PayloadRef, API_VERSION,
    KIND_BUNDLE, MANIFEST, MAX_MANIFEST,
};
use snapshot::fleet::channel::{ChannelEntry, ChannelManifest, ChannelSpec, KIND_CHANNEL};
use snapshot::fleet::mqtt;
use snapshot::fleet::sign::SecretKey;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The base's chain id: `--base-hash HEX`, or the top snapshot of the chain in `--base IMAGE`.
fn base_hash(ctx: &Ctx, image: Option<&Path>, hash: Option<&str>) -> Result<[u8; 32], CliError> {
    match (image, hash) {
        (_, Some(h)) => unhex32(&h.to_ascii_lowercase()).ok_or_else(|| CliError::BadHash(h.into())),
        (Some(img), None) => {
            let c = Ctx {
                spec: super::super::device::DeviceSpec {
                    device: Some(img.to_path_buf()),
                    partition: ctx.spec.partition.clone(),
                    erase_size: ctx.spec.erase_size,
                },
                trial: 0,
                ..ctx.clone()
            };
            let (_lock, mut dev) = c.open(false)?;
            // Not a chain (the wrong file, a JFFS2 image, zeros) would read as the empty
            // chain: a bundle for every freshly formatted unit instead of the intended base.
            let view = ops::read_view(&mut dev);
            ops::require_chain(&mut dev, &view)?;
            Ok(view_id(&view))
        }
        (None, None) => Err(CliError::BadHash(String::new())),
    }
}

pub struct CreateArgs<'a> {
    pub base: Option<&'a Path>,
    pub base_hash: Option<&'a str>,
    pub upper: &'a Path,
    pub out: &'a Path,
    pub version: &'a str,
    pub note: &'a str,
    pub trial: u16,
    pub gzip: bool,
}

pub fn create(ctx: &Ctx, a: &CreateArgs<'_>) -> Result<(), CliError> {
    let base = base_hash(ctx, a.base, a.base_hash)?;
    // The unit's partition is unknown here: the manifest check below bounds the file data.
    let packed = tree::pack(a.upper, a.gzip, None)?;
    let file = match packed.compression {
        Compression::Gzip => "payload.tar.gz",
        Compression::None => "payload.tar",
    };
    let manifest = BundleManifest {
        api_version: API_VERSION.into(),
        kind: KIND_BUNDLE.into(),
        spec: BundleSpec {
            base: hex(&base),
            payload: PayloadRef {
                file: file.into(),
                sha256: sha256_hex(&packed.data),
                size: packed.data.len() as u64,
                unpacked_size: packed.unpacked_len,
                compression: match packed.compression {
                    Compression::Gzip => "gzip",
                    Compression::None => "none",
                }
                .into(),
            },
            trial_boots: a.trial,
            version: a.version.into(),
            note: a.note.into(),
        },
    };
    // What a unit checks before it applies the bundle, checked before it is written.
    manifest.check_payload(&packed.data)?;
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| CliError::Payload {
        what: "the manifest".into(),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    std::fs::create_dir_all(a.out).map_err(io_err("creating", a.out))?;
    write_file(&a.out.join(file), &packed.data)?;
    // A new manifest invalidates the old signatures.
    let sig = sig_path(&a.out.join(MANIFEST));
    if sig.exists() {
        std::fs::remove_file(&sig).map_err(io_err("removing", &sig))?;
    }
    write_file(&a.out.join(MANIFEST), &json)?;
    println!(
        "bundle {} written to {}: {} on top of {}, {} entries, {} bytes ({}); sign it with `snapshot bundle sign --key SECRET {}`",
        a.version,
        a.out.display(),
        file,
        hex(&base),
        packed.report.entries,
        packed.data.len(),
        manifest.spec.payload.compression,
        a.out.display()
    );
    Ok(())
}

/// The file a `sign` or `verify` argument names: a bundle directory means its manifest.
fn signed_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MANIFEST)
    } else {
        path.to_path_buf()
    }
}

/// Appends a signature by `key` over `target` (a file, or a bundle directory's manifest) to its
/// `.sig` file.
pub fn sign(key: &Path, target: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(key).map_err(io_err("reading", key))?;
    let sk = SecretKey::parse(&text).map_err(|err| CliError::Key {
        path: key.to_path_buf(),
        err,
    })?;
    let file = signed_file(target);
    let msg = std::fs::read(&file).map_err(io_err("reading", &file))?;
    let sig = sig_path(&file);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sig)
        .map_err(io_err("writing", &sig))?;
    f.write_all(sk.sign(&msg).as_bytes())
        .map_err(io_err("writing", &sig))?;
    println!(
        "signed {} with key {} ({})",
        file.display(),
        sk.num,
        sig.display()
    );
    Ok(())
}

/// Writes PREFIX.pub and PREFIX.sec (unencrypted, as `usign -G` does).
pub fn keygen(prefix: &Path, comment: &str) -> Result<(), CliError> {
    let mut seed = [0u8; 32];
    let mut num = [0u8; 8];
    for buf in [&mut seed[..], &mut num[..]] {
        rustix::rand::getrandom(buf, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
            CliError::Io {
                what: "getting random bytes for",
                path: prefix.to_path_buf(),
                source: e.into(),
            }
        })?;
    }
    let sk = SecretKey::from_seed(seed, num);
    let (pubf, secf) = (with_suffix(prefix, ".pub"), with_suffix(prefix, ".sec"));
    write_file(
        &pubf,
        sk.public()
            .to_file(&format!("{comment} public key"))
            .as_bytes(),
    )?;
    write_file(
        &secf,
        sk.to_file(&format!("{comment} secret key")).as_bytes(),
    )?;
    println!(
        "key {}: {} (install on units as {DEFAULT_KEYS}/{}), {}",
        sk.num,
        pubf.display(),
        sk.num,
        secf.display()
    );
    Ok(())
}

/// Writes ROOT/CHANNEL.json listing the bundles at ROOT/PATH (each a bundle directory); the
/// newest given for a base wins.
pub fn channel(
    root: &Path,
    name: &str,
    priority: f64,
    published: Option<u64>,
    expires_days: f64,
    bundles: &[String],
) -> Result<(), CliError> {
    let mut entries: Vec<ChannelEntry> = Vec::new();
    for path in bundles {
        let mpath = root.join(path).join(MANIFEST);
        let msg = read_limited(&mpath, MANIFEST, MAX_MANIFEST)?;
        let m = BundleManifest::parse(&mpath.display().to_string(), &msg)?;
        entries.retain(|e| e.base != m.spec.base);
        entries.push(ChannelEntry {
            base: m.spec.base,
            path: path.trim_end_matches('/').to_string(),
            version: m.spec.version,
        });
    }
    let published = published.unwrap_or_else(unix_now);
    // What every unit would refuse (ChannelManifest::parse) is refused here, before signing.
    if !(priority.is_finite() && priority >= 0.0) {
        return Err(CliError::Refused(format!(
            "--priority {priority} is not a number of days >= 0"
        )));
    }
    if !(expires_days.is_finite() && expires_days >= 0.0) {
        return Err(CliError::Refused(format!(
            "--expires-days {expires_days} is not a number of days >= 0"
        )));
    }
    // `as u64` saturates: an expiry past the end of u64 is refused, not wrapped below
    // `published` (which every unit refuses) or a panic.
    let expires = match expires_days > 0.0 {
        false => None,
        true => Some(
            published
                .checked_add((expires_days * 86_400.0).ceil() as u64)
                .filter(|_| expires_days * 86_400.0 < u64::MAX as f64)
                .ok_or_else(|| {
                    CliError::Refused(format!(
                        "--expires-days {expires_days} after {published} is past the largest time a manifest can say"
                    ))
                })?,
        ),
    };
    let doc = ChannelManifest {
        api_version: API_VERSION.into(),
        kind: KIND_CHANNEL.into(),
        spec: ChannelSpec {
            channel: name.into(),
            published,
            priority,
            expires,
            bundles: entries,
        },
    };
    let mut json = serde_json::to_vec_pretty(&doc).map_err(|e| CliError::Payload {
        what: "the channel manifest".into(),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    let out_name = format!("{name}.json");
    // The rest of what every unit checks: an entry's path is the bundle's directory relative
    // to the mirror, and a bundle given by its absolute path or through `..` reads here all the
    // same (`root.join`), but every unit refuses the whole channel for it (23).
    ChannelManifest::parse(&out_name, &json)
        .map_err(|e| CliError::Refused(format!("{e}: every unit would refuse this channel")))?;
    let out = root.join(out_name);
    let sig = sig_path(&out);
    if sig.exists() {
        std::fs::remove_file(&sig).map_err(io_err("removing", &sig))?;
    }
    write_file(&out, &json)?;
    println!(
        "channel {name}: {} bundle(s), rollout over {priority} day(s), written to {}; sign it with `snapshot bundle sign --key SECRET {}`",
        doc.spec.bundles.len(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// `fleet status --mqtt BROKER`: every unit's retained status document under
/// `<prefix>/+/state`, summed up as `fleet report` does.
pub fn status_mqtt(m: &MqttArgs<'_>, json: bool, html: Option<&Path>) -> Result<(), CliError> {
    let mut nonce = [0u8; 8];
    if rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::INSECURE).is_err() {
        nonce = unix_now().to_le_bytes();
    }
    let me = format!("snapinit-status-{}", hex(&nonce));
    let collect = |leaf: &str| {
        with_broker(m, "reading the fleet", |m| {
            let mut s = mqtt::Session::connect(m.broker, &me, m.login, m.timeout)?;
            let msgs = s.collect_retained(
                &format!("{}/+/{leaf}", m.prefix),
                &format!("{}/{me}/end", m.prefix),
            )?;
            s.disconnect();
            Ok(msgs)
        })
    };
    let msgs = collect("state")?;
    // The units' last health verdicts, by unit id (the topic's middle level).
    let mut verdicts = std::collections::BTreeMap::new();
    for (topic, bytes) in collect("health")? {
        let unit = topic
            .split('/')
            .rev()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            verdicts.insert(unit, v);
        }
    }
    // The broker is not trusted to be tidy: a message that is not a status document is
    // named and left out, not fatal.
    let mut docs = Vec::new();
    for (topic, bytes) in msgs {
        // As the terminal shows it: the broker chose these bytes.
        let shown = term(&topic);
        match parse_unit_doc(&topic, &bytes) {
            Ok(mut v) => {
                // The unit is the one whose topic holds the document (the broker's ACL lets
                // each unit write only its own), not the id the document claims: a unit
                // must not pose as another in the view, nor take that unit's health verdict.
                let unit = topic.split('/').rev().nth(1).unwrap_or_default();
                match v["status"].as_object_mut() {
                    Some(st) => {
                        if st.get("unit").and_then(|u| u.as_str()) != Some(unit) {
                            eprintln!(
                                "snapshot: fleet: {shown}: the document names unit {}: shown as {unit:?}",
                                st.get("unit").unwrap_or(&serde_json::Value::Null)
                            );
                            st.insert("unit".into(), unit.into());
                        }
                        docs.push(v);
                    }
                    None => eprintln!("snapshot: fleet: {shown}: left out: no status object"),
                }
            }
            Err(e) => eprintln!(
                "snapshot: fleet: {shown}: left out: {}",
                term(&e.to_string())
            ),
        }
    }
    summarize(&docs, &verdicts, json, html)
}

fn parse_unit_doc(what: &str, bytes: &[u8]) -> Result<serde_json::Value, BundleError> {
    let bad = |detail: String| BundleError::BadManifest {
        what: what.to_string(),
        detail,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if v["apiVersion"] != API_VERSION || v["kind"] != "UnitStatus" {
        return Err(bad("not a snapinit.fleet/v1 UnitStatus".into()));
    }
    Ok(v)
}

/// `fleet report FILES...`: the fleet from UnitStatus documents (as units publish them).
pub fn report(files: &[PathBuf], json: bool, html: Option<&Path>) -> Result<(), CliError> {
    let mut docs = Vec::new();
    for f in files {
        let bytes = read_limited(f, "a status document", MAX_MANIFEST)?;
        docs.push(parse_unit_doc(&f.display().to_string(), &bytes)?);
    }
    summarize(&docs, &Default::default(), json, html)
}

/// How many units on which chain id and version, on trial, rolled back and why; `--json`
/// (kind FleetReport), `--html FILE`. `verdicts`: each unit's last health verdict as the broker
/// kept it. A rollback whose unit lost the failed verdict's words with its RAM at the reboot
/// (it says `trialExhausted`, or `healthCheckFailed` with only the kinds of check its block's
/// marks name) is `healthCheckFailed` with the verdict's failures when that verdict failed on
/// the very block that rolled back.
fn summarize(
    docs: &[serde_json::Value],
    verdicts: &std::collections::BTreeMap<String, serde_json::Value>,
    json: bool,
    html: Option<&Path>,
) -> Result<(), CliError> {
    use std::collections::BTreeMap;
    let mut chains: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let mut on_trial = Vec::new();
    // Units whose boot left part of their chain out: (unit, the boot record's word).
    let mut not_running: Vec<(String, String)> = Vec::new();
    let mut rolled_back = Vec::new();
    // When each unit's running version was written: its newest snapshot's creation time.
    let mut taken: Vec<(u64, String, String)> = Vec::new();
    for v in docs {
        let st = &v["status"];
        let text = |k: &str, none: &str| st[k].as_str().unwrap_or(none).to_string();
        let unit = text("unit", "?");
        let version = text("version", "-");
        chains
            .entry((text("chainId", "?"), version.clone(), text("channel", "-")))
            .or_default()
            .push(unit.clone());
        if st["onTrial"] == true {
            on_trial.push(unit.clone());
        }
        if let Some(word) = st["boot"]["notRun"].as_str() {
            not_running.push((unit.clone(), word.to_string()));
        }
        if let Some(r) = st["lastRollback"].as_object() {
            let field = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let (mut reason, mut detail) = (field("reason"), field("detail"));
            if let Some(v) = verdicts
                .get(&unit)
                .filter(|v| verdict_on(v, r.get("headerHash")))
            {
                reason = "healthCheckFailed".into();
                detail = failures(v);
            }
            rolled_back.push((unit.clone(), reason, field("version"), detail));
        }
        let created = st["snapshots"]
            .as_array()
            .and_then(|s| s.last())
            .and_then(|s| s["created"].as_u64());
        if let (Some(t), true) = (created, version != "-") {
            taken.push((t, version, unit));
        }
    }
    let doc = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "FleetReport",
        "status": {
            "units": docs.len(),
            "chains": chains.iter().map(|((c, v, ch), u)| serde_json::json!({
                "chainId": c, "version": v, "channel": ch, "count": u.len(), "units": u,
            })).collect::<Vec<_>>(),
            "onTrial": on_trial,
            "notRunning": not_running.iter().map(|(u, w)| serde_json::json!({"unit": u, "notRun": w})).collect::<Vec<_>>(),
            "rolledBack": rolled_back.iter().map(|(u, w, v, d)| serde_json::json!({"unit": u, "reason": w, "version": v, "detail": d})).collect::<Vec<_>>(),
        }
    });
    if json {
        println!("{doc}");
    } else {
        // Every string here comes from the units (through a broker not trusted): no control
        // characters reach the terminal (escape sequences could rewrite what it shows).
        println!("{} unit(s)", docs.len());
        for ((c, v, ch), u) in &chains {
            let (v, ch) = (term(v), term(ch));
            println!("  {:>4}  {v:<12} {ch:<10} {}", u.len(), term(short(c)));
        }
        println!("  on trial: {}", on_trial.len());
        for (u, w) in &not_running {
            println!("  not running its whole chain: {} ({})", term(u), term(w));
        }
        for (u, w, v, d) in &rolled_back {
            let (u, w, v, d) = (term(u), term(w), term(v), term(d));
            println!("  rolled back: {u} ({w}, {v}): {d}");
        }
    }
    if let Some(path) = html {
        taken.sort();
        let page = html_page(
            docs.len(),
            &chains,
            &on_trial,
            &not_running,
            &rolled_back,
            &taken,
        );
        write_file(path, page.as_bytes())?;
    }
    Ok(())
}

/// Whether a failed health verdict speaks of the block that rolled back: both name the same
/// header hash (a verdict or rollback without one speaks of no block in particular).
fn verdict_on(verdict: &serde_json::Value, rolled: Option<&serde_json::Value>) -> bool {
    let hash = verdict["headerHash"].as_str();
    verdict["ok"] == false && hash.is_some() && hash == rolled.and_then(|x| x.as_str())
}

/// `s` with its control characters shown as U+FFFD, for a terminal.
fn term(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A chain id cut to 16 characters for display: the broker is not trusted to send 64 hex
/// digits, and a byte index inside a multi-byte character would panic (abort in release).
fn short(c: &str) -> &str {
    c.char_indices().nth(16).map_or(c, |(i, _)| &c[..i])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained page (inline CSS and SVG, no script): units per chain id, version and
/// channel; the rollout over time (units on each version by when they wrote it); on trial;
/// rollbacks and their reasons.
fn html_page(
    units: usize,
    chains: &std::collections::BTreeMap<(String, String, String), Vec<String>>,
    on_trial: &[String],
    not_running: &[(String, String)],
    rolled_back: &[(String, String, String, String)],
    taken: &[(u64, String, String)],
) -> String {
    let total = units.max(1);
    let mut rows = String::new();
    for ((c, v, ch), u) in chains {
        rows += &format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
             <td><div class=bar style=\"width:{}px\"></div></td><td>{}</td></tr>\n",
            esc(v),
            esc(ch),
            esc(short(c)),
            u.len(),
            u.len() * 300 / total,
            esc(&u.join(", "))
        );
    }
    // The rollout: one step line per version, x = time, y = units on it.
    let (w, h) = (600.0, 200.0);
    let mut svg = String::new();
    if let (Some(first), Some(last)) = (taken.first(), taken.last()) {
        let span = (last.0 - first.0).max(1) as f64;
        let x = |t: u64| 40.0 + (t - first.0) as f64 / span * (w - 60.0);
        let y = |k: usize| h - 20.0 - k as f64 / total as f64 * (h - 40.0);
        let mut versions: Vec<&String> = taken.iter().map(|t| &t.1).collect();
        versions.sort();
        versions.dedup();
        let colours = ["#3a7", "#37a", "#a73", "#a3a", "#777"];
        for (i, v) in versions.iter().enumerate() {
            let mut pts = format!("{:.1},{:.1}", x(first.0), y(0));
            let mut k = 0;
            for t in taken.iter().filter(|t| &t.1 == *v) {
                pts += &format!(" {:.1},{:.1}", x(t.0), y(k));
                k += 1;
                pts += &format!(" {:.1},{:.1}", x(t.0), y(k));
            }
            pts += &format!(" {:.1},{:.1}", x(last.0), y(k));
            let c = colours[i % colours.len()];
            svg += &format!(
                "<polyline fill=none stroke=\"{c}\" stroke-width=3 points=\"{pts}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{c}\">{} ({k})</text>",
                x(last.0) - 50.0,
                y(k) - 6.0,
                esc(v)
            );
        }
        svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
             <line x1=40 y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
             <line x1=40 y1=20 x2=40 y2=\"{b}\" stroke=\"#999\"/>\
             <text x=0 y=24>{total}</text><text x=0 y=\"{b}\">0</text>{svg}</svg>\
             <p class=note>from {} to {} (Unix seconds: when each unit wrote the version it runs)</p>",
            first.0,
            last.0,
            b = h - 20.0,
            r = w - 20.0
        );
    } else {
        svg = "<p class=note>no unit runs a fleet bundle yet</p>".into();
    }
    let mut nr = String::new();
    for (u, w) in not_running {
        nr += &format!(
            "<tr><td>{}</td><td class=why>{}</td></tr>\n",
            esc(u),
            esc(w)
        );
    }
    let mut rb = String::new();
    for (u, why, v, d) in rolled_back {
        rb += &format!(
            "<tr><td>{}</td><td>{}</td><td class=why>{}</td><td>{}</td></tr>\n",
            esc(u),
            esc(v),
            esc(why),
            esc(d)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>snapinit fleet</title>\
         <style>body{{font-family:sans-serif;margin:2em;background:#fff;color:#222}}\
         td,th{{padding:4px 8px;text-align:left;border-bottom:1px solid #ddd}}\
         .bar{{background:#3a7;height:1em}}.why{{color:#b22;font-weight:bold}}\
         .note{{color:#666;font-size:small}}</style></head><body>\
         <h1>Fleet: {units} unit(s)</h1>\
         <h2>Units per chain</h2><table><tr><th>version</th><th>channel</th><th>chain id</th>\
         <th>units</th><th></th><th>which</th></tr>\n{rows}</table>\
         <h2>Rollout over time</h2>{svg}\
         <h2>On trial: {}</h2><p>{}</p>\
         <h2>Not running their whole chain: {}</h2><table><tr><th>unit</th><th>boot record</th>\
         </tr>\n{nr}</table>\
         <h2>Rolled back: {}</h2><table><tr><th>unit</th><th>version</th><th>reason</th>\
         <th>detail</th></tr>\n{rb}</table></body></html>\n",
        on_trial.len(),
        esc(&on_trial.join(", ")),
        not_running.len(),
        rolled_back.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_strings_reach_the_terminal_without_control_characters() {
        assert_eq!(term("v2"), "v2");
        assert_eq!(
            term("a\u{1b}[2Jb\nc\u{9b}d"),
            "a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}d"
        );
    }

    #[test]
    fn a_verdict_names_the_rolled_back_block_by_its_hash() {
        let failed = |h: Option<&str>| serde_json::json!({"ok": false, "headerHash": h});
        let hash = serde_json::json!("ab12");
        assert!(verdict_on(&failed(Some("ab12")), Some(&hash)));
        assert!(!verdict_on(&failed(Some("cd34")), Some(&hash)));
        // Neither names a block: the verdict says nothing of this rollback.
        assert!(!verdict_on(&failed(None), None));
        assert!(!verdict_on(&failed(None), Some(&hash)));
        assert!(!verdict_on(
            &serde_json::json!({"ok": true, "headerHash": "ab12"}),
            Some(&hash)
        ));
    }
}
