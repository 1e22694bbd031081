//! A bundle: a snapshot payload plus the signed manifest that says what it applies on top of.
//!
//! On a mirror (or on disk) a bundle is a directory of three files:
//! - `payload.tar.gz` (or `payload.tar`): the payload exactly as it goes on flash (pack.rs);
//! - `manifest.json`: a [`BundleManifest`], versioned as `apiVersion`/`kind`;
//! - `manifest.json.sig`: one or more usign signatures over the manifest's bytes.
//!
//! The manifest carries the payload's SHA-256 and size, so the signatures cover the payload.

use super::sign::{parse_sigs, KeyNum, Keyring};
pub use crate::hex::{hex, unhex32};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snapinit::header::{data_limit, MAX_TRIAL_BUDGET};
use snapinit::tar::TarError;

pub const API_VERSION: &str = "snapinit.fleet/v1";
pub const KIND_BUNDLE: &str = "Bundle";
pub const MANIFEST: &str = "manifest.json";
pub const SIG_SUFFIX: &str = ".sig";
/// The most bytes a manifest or a signature file may have: read before anything is parsed.
pub const MAX_MANIFEST: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleManifest {
    pub api_version: String,
    pub kind: String,
    pub spec: BundleSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleSpec {
    /// Hex of the chain id ([`chain_id`]) of the chain this bundle goes on top of.
    pub base: String,
    pub payload: PayloadRef,
    /// Boots the new snapshot gets on trial before it is confirmed (1-15: what a header records).
    pub trial_boots: u16,
    pub version: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadRef {
    /// File name beside the manifest.
    pub file: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
    /// Size of the tar (after decompression).
    pub unpacked_size: u64,
    /// `gzip` or `none`.
    pub compression: String,
}

/// Why a bundle is refused. Each kind has its own exit code in the CLI.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{what}: {detail}")]
    BadManifest { what: String, detail: String },
    #[error("{what}: {got} valid signature(s) from trusted keys, {need} required{}", if signers.is_empty() { String::new() } else { format!(" (good: {})", signers.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")) })]
    Untrusted {
        what: String,
        got: usize,
        need: usize,
        signers: Vec<KeyNum>,
    },
    #[error("{what}: {detail}")]
    BadSignatureFile { what: String, detail: String },
    #[error("payload {file}: {detail}")]
    Mismatch { file: String, detail: String },
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{what} was published at {published}, before the one this unit already took ({seen}): a replay")]
    Stale {
        what: String,
        published: u64,
        seen: u64,
    },
    #[error("the bundle goes on top of {want}, but this chain's head is {have}")]
    WrongBase { want: String, have: String },
    #[error("{what} expired at {expires} (it is {now}): a stale manifest, maybe a mirror frozen in the past")]
    Expired {
        what: String,
        expires: u64,
        now: u64,
    },
}

/// A chain's identity for bundles: h0 = 32 zero bytes, h_i = SHA-256(h_(i-1) || payload SHA-256
/// of snapshot i), oldest first. Header hashes differ on every unit (each write draws a nonce);
/// this one is the same on every unit that holds the same snapshots in the same order.
pub fn chain_id<'a>(payload_sha256: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut h = [0u8; 32];
    for p in payload_sha256 {
        let mut d = Sha256::new();
        d.update(h);
        d.update(p);
        h = d.finalize().into();
    }
    h
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Checks `k` signatures of distinct trusted keys over `msg` in the `.sig` text `sig`.
pub fn check_signatures(
    what: &str,
    msg: &[u8],
    sig: Option<&str>,
    ring: &Keyring,
    need: usize,
) -> Result<Vec<KeyNum>, BundleError> {
    let sigs = match sig {
        None => Vec::new(),
        Some(text) => parse_sigs(text).map_err(|e| BundleError::BadSignatureFile {
            what: format!("{what}{SIG_SUFFIX}"),
            detail: e.to_string(),
        })?,
    };
    let good: Vec<KeyNum> = ring.count_valid(msg, &sigs).into_iter().collect();
    if good.len() < need.max(1) {
        return Err(BundleError::Untrusted {
            what: what.to_string(),
            got: good.len(),
            need: need.max(1),
            signers: good,
        });
    }
    Ok(good)
}

impl BundleManifest {
    /// Parses a manifest (already signature-checked) and checks its fields.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self, BundleError> {
        let bad = |detail: String| BundleError::BadManifest {
            what: what.to_string(),
            detail,
        };
        let m: BundleManifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.api_version != API_VERSION || m.kind != KIND_BUNDLE {
            return Err(bad(format!(
                "apiVersion {:?} kind {:?}, not {API_VERSION:?} {KIND_BUNDLE:?}",
                m.api_version, m.kind
            )));
        }
        if unhex32(&m.spec.base).is_none() {
            return Err(bad(format!("base {:?} is not 64 hex digits", m.spec.base)));
        }
        if unhex32(&m.spec.payload.sha256).is_none() {
            return Err(bad("payload.sha256 is not 64 hex digits".into()));
        }
        if !(1..=MAX_TRIAL_BUDGET).contains(&m.spec.trial_boots) {
            return Err(bad(format!(
                "trialBoots {} is not 1 to {MAX_TRIAL_BUDGET}",
                m.spec.trial_boots
            )));
        }
        if !matches!(m.spec.payload.compression.as_str(), "gzip" | "none") {
            return Err(bad(format!(
                "compression {:?} is not gzip or none",
                m.spec.payload.compression
            )));
        }
        let f = &m.spec.payload.file;
        if f.is_empty() || f.contains('/') || f.starts_with('.') {
            return Err(bad(format!("payload file name {f:?} is not a plain name")));
        }
        Ok(m)
    }

    pub fn base(&self) -> [u8; 32] {
        unhex32(&self.spec.base).unwrap_or([0; 32])
    }

    /// Checks the payload bytes against the manifest: size and SHA-256, then in one pass of the
    /// boot path's gzip and tar readers that they take it whole, with the bound on file data
    /// of the smallest erase size (so that every unit boots it), and that it decodes to exactly
    /// `unpackedSize` bytes.
    pub fn check_payload(&self, data: &[u8]) -> Result<(), BundleError> {
        let p = &self.spec.payload;
        let mism = |detail: String| BundleError::Mismatch {
            file: p.file.clone(),
            detail,
        };
        if data.len() as u64 != p.size {
            return Err(mism(format!(
                "{} bytes, the manifest says {}",
                data.len(),
                p.size
            )));
        }
        let h = sha256_hex(data);
        if h != p.sha256 {
            return Err(mism(format!("SHA-256 {h}, the manifest says {}", p.sha256)));
        }
        // One pass of the boot path's own readers: the bound on file data and on the zeros
        // after the archive stops a payload that would inflate without end before it does. The
        // block's erase size is the unit's, unknown here: one byte gives the least room, so a
        // payload that passes fits the bound on every geometry.
        let limit = data_limit(p.size, 1);
        let mut tar = crate::unpack::tar_reader(data, p.compression == "gzip", limit);
        match tar.finish() {
            Ok(()) => {}
            Err(TarError::DataLimit { total, limit }) => {
                return Err(BundleError::TooLarge {
                    what: format!(
                        "the file data in payload {} (at most {}x its size)",
                        p.file,
                        snapinit::header::MAX_DATA_PER_FLASH_BYTE
                    ),
                    size: total,
                    limit,
                })
            }
            Err(e) => return Err(mism(format!("the boot path would refuse it: {e}"))),
        }
        let unpacked = tar.get_ref().n;
        if unpacked != p.unpacked_size {
            return Err(mism(format!(
                "decodes to {unpacked} bytes, the manifest says {}",
                p.unpacked_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(base: &str, sha: &str) -> Vec<u8> {
        serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": KIND_BUNDLE,
            "spec": {
                "base": base,
                "payload": {"file": "payload.tar", "sha256": sha, "size": 0,
                            "unpackedSize": 0, "compression": "none"},
                "trialBoots": 1,
                "version": "v2",
            }
        })
        .to_string()
        .into_bytes()
    }

    /// Hex in a signed manifest is lower case, as units compare it (docs/FLEET.md): upper case
    /// is refused at once (23), not taken and then never matched (a payload that is the one
    /// named refused as a mismatch, 20; a channel entry never offered, "up to date").
    #[test]
    fn upper_case_hex_in_a_manifest_is_refused() {
        let lower = sha256_hex(b"");
        let upper = lower.to_ascii_uppercase();
        assert!(BundleManifest::parse("m", &manifest(&lower, &lower)).is_ok());
        for (base, sha) in [(&upper, &lower), (&lower, &upper)] {
            let r = BundleManifest::parse("m", &manifest(base, sha));
            assert!(matches!(r, Err(BundleError::BadManifest { .. })), "{r:?}");
        }
        let channel = |base: &str| {
            serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": "Channel",
                "spec": {"channel": "stable", "published": 1, "priority": 0.0,
                         "bundles": [{"base": base, "path": "bundles/v2", "version": "v2"}]}
            })
            .to_string()
        };
        use super::super::channel::ChannelManifest;
        assert!(ChannelManifest::parse("c", channel(&lower).as_bytes()).is_ok());
        let r = ChannelManifest::parse("c", channel(&upper).as_bytes());
        assert!(matches!(r, Err(BundleError::BadManifest { .. })), "{r:?}");
    }
}
