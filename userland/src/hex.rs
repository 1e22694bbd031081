//! Lower-case hex, as chain ids, header hashes and payload digests are shown and stored.

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lower-case hex digits as 32 bytes; anything else is `None` (`from_str_radix` alone would
/// also take a `+` sign in a pair). Upper case too is refused: the fleet compares these as
/// strings with the lower case [`hex`] makes (a chain id with a channel entry's base, a
/// payload's SHA-256 with its manifest's), so a manifest that passed with upper case could
/// never match: its payload refused as a mismatch, its channel entry never offered.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
