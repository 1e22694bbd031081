//! A channel manifest (`<channel>.json` + `<channel>.json.sig` on each mirror): the newest bundle
//! per base chain id, with the publication time and the PRIORITY (days) of a staggered rollout.
//!
//! Rollout as Gluon's autoupdater: t days after publication, the share of units that may act is
//! p = 3x^2 - 2x^3 with x = t / PRIORITY (0 before publication, 1 from PRIORITY days on). Each
//! unit draws its own point u in [0, 1) from SHA-256(unit id, bundle version) and acts once
//! p > u: the rollout is spread over the fleet as p says, every unit's turn is fixed and
//! reproducible, and a unit that is polled late catches up at once.

use super::bundle::{unhex32, BundleError, API_VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const KIND_CHANNEL: &str = "Channel";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelManifest {
    pub api_version: String,
    pub kind: String,
    pub spec: ChannelSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSpec {
    /// The channel's name (stable, beta, ...): a unit refuses a manifest of another channel.
    pub channel: String,
    /// Publication time, Unix seconds.
    pub published: u64,
    /// Days over which the rollout reaches every unit (0: at once).
    pub priority: f64,
    /// Unix seconds after which units refuse the manifest (a mirror frozen in the past cannot
    /// hold units back longer than this). Absent: it never goes stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    pub bundles: Vec<ChannelEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelEntry {
    /// The chain id the bundle goes on top of.
    pub base: String,
    /// The bundle directory, relative to the mirror's base URL.
    pub path: String,
    pub version: String,
}

impl ChannelManifest {
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self, BundleError> {
        let bad = |detail: String| BundleError::BadManifest {
            what: what.to_string(),
            detail,
        };
        let m: ChannelManifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.api_version != API_VERSION || m.kind != KIND_CHANNEL {
            return Err(bad(format!(
                "apiVersion {:?} kind {:?}, not {API_VERSION:?} {KIND_CHANNEL:?}",
                m.api_version, m.kind
            )));
        }
        if !(m.spec.priority.is_finite() && m.spec.priority >= 0.0) {
            return Err(bad(format!("priority {} is not >= 0", m.spec.priority)));
        }
        if let Some(x) = m.spec.expires {
            if x <= m.spec.published {
                return Err(bad(format!(
                    "expires {x} is not after published {}",
                    m.spec.published
                )));
            }
        }
        for e in &m.spec.bundles {
            if unhex32(&e.base).is_none() {
                return Err(bad(format!("base {:?} is not 64 hex digits", e.base)));
            }
            if e.path.starts_with('/') || e.path.split('/').any(|c| c == "..") {
                return Err(bad(format!("path {:?} leaves the mirror", e.path)));
            }
        }
        Ok(m)
    }

    /// The entry for a chain with id `base` (hex).
    pub fn entry_for(&self, base: &str) -> Option<&ChannelEntry> {
        self.spec.bundles.iter().find(|e| e.base == base)
    }
}

/// Share of units that may act `elapsed` seconds after publication, over `priority` days.
pub fn rollout(elapsed: i64, priority: f64) -> f64 {
    if elapsed < 0 {
        return 0.0;
    }
    let span = priority * 86_400.0;
    if span <= 0.0 || elapsed as f64 >= span {
        return 1.0;
    }
    let x = elapsed as f64 / span;
    3.0 * x * x - 2.0 * x * x * x
}

/// The unit's fixed point in [0, 1) for one bundle version.
pub fn jitter(unit: &str, version: &str) -> f64 {
    let mut d = Sha256::new();
    d.update(unit.as_bytes());
    d.update([0]);
    d.update(version.as_bytes());
    let h = d.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_curve() {
        assert_eq!(rollout(-1, 2.0), 0.0);
        assert_eq!(rollout(0, 2.0), 0.0);
        assert!((rollout(86_400, 2.0) - 0.5).abs() < 1e-12);
        assert!((rollout(43_200, 2.0) - (3.0 / 16.0 - 2.0 / 64.0)).abs() < 1e-12);
        assert_eq!(rollout(2 * 86_400, 2.0), 1.0);
        assert_eq!(rollout(5, 0.0), 1.0);
        let j = jitter("unit-1", "v2");
        assert!((0.0..1.0).contains(&j));
        assert_ne!(j, jitter("unit-2", "v2"));
        assert_eq!(j, jitter("unit-1", "v2"));
    }
}
