//! The 256-byte block header, byte by byte (see docs/FORMAT.md).
//!
//! A header has two parts. The *sealed* part (bytes 0..192) is written once, in one program
//! operation, and is protected by its own SHA-256 at 160..192: that program is the commit point
//! of every block. The *marks* (bytes 192..256) stay erased (0xFF) when the block is written and
//! are later cleared one byte at a time, so that a single-byte program — which NOR flash cannot
//! tear — moves the block to its next state (dropped, confirmed, one trial boot consumed).

use core::fmt;
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = *b"SNAPINIT";
pub const VERSION: u16 = 1;
/// Header size; the payload starts right after it.
pub const HEADER_LEN: usize = 256;
/// Bytes covered by the header hash.
pub const HASHED_LEN: usize = 0xA0;
/// Bytes written by the commit program: the hashed fields plus the hash itself.
pub const SEALED_LEN: usize = 0xC0;
/// Offset of the `live` mark: 0xFF live, 0x00 dropped by a rollback.
pub const LIVE_MARK: usize = 0xC0;
/// Offset of the `confirmed` mark: 0xFF unconfirmed, 0x00 confirmed (trial boots).
pub const CONFIRM_MARK: usize = 0xC1;
/// Offset of the trial-boot marks: one byte per boot attempt, cleared in order.
pub const TRIAL_MARKS: usize = 0xC2;
pub const TRIAL_MARKS_LEN: usize = 16;
/// Offset of the `sealed` mark: 0x00 once the sealed part has been programmed whole (written
/// right after it), 0xFF before that or on blocks of writers that predate it. It is what tells a
/// header torn by a power cut (never sealed: leftovers the next write may erase) from a header
/// that was whole and has since changed (bit rot: data, never erased without asking).
pub const SEALED_MARK: usize = 0xD2;
/// Offset of the failed-check marks: one byte per kind of health check (`snapshot health`:
/// command, ping, batman-adv neighbours), set when a boot of this block's trial failed that
/// check. A rolled-back block still tells why after the reboot has emptied RAM; the boot path
/// only accepts them.
pub const FAILED_MARKS: usize = 0xD3;
pub const FAILED_MARKS_LEN: usize = 3;

/// A mark byte that has been programmed.
pub const MARK_SET: u8 = 0x00;
/// A mark byte still erased.
pub const MARK_CLEAR: u8 = 0xFF;

pub type Digest32 = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Volatile,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Snapshot => 1,
            Kind::Volatile => 2,
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Snapshot),
            2 => Some(Kind::Volatile),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Snapshot => "snapshot",
            Kind::Volatile => "volatile",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The payload is a plain tar.
    None,
    /// The payload is a gzip member holding the tar.
    Gzip,
}

impl Compression {
    fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// The fields a writer chooses; everything the sealed part of a header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub kind: Kind,
    pub compression: Compression,
    /// Erase size the chain was laid out for; a reader with another geometry rejects the block.
    pub erase_size: u32,
    /// Erase blocks at the end of the partition reserved as the back buffer.
    pub backbuf_blocks: u16,
    /// Trial boots granted to this block before it must be confirmed; 0 = confirmed at write.
    pub trial_budget: u16,
    /// Snapshot: its 1-based position in the chain. Volatile: the number of snapshots below it.
    pub seq: u32,
    /// Strictly increasing over every block ever written to the partition; of two valid copies
    /// of the volatile the higher one is current.
    pub generation: u64,
    pub payload_len: u64,
    /// Size of the tar before compression (informational).
    pub unpacked_len: u64,
    /// Unix time of the write (informational).
    pub created: u64,
    /// Random bytes: two writes of identical content still get distinct header hashes, so a
    /// block left behind by a rollback never links onto a rewritten predecessor.
    pub nonce: [u8; 8],
    pub payload_sha256: Digest32,
    /// Header hash of the block below; all zero for the first block.
    pub prev: Digest32,
}

/// The state carried by the marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub live: bool,
    pub confirmed: bool,
    /// Trial boots already consumed.
    pub trials_used: u8,
    /// The sealed mark is set: the header program completed (see `SEALED_MARK`).
    pub sealed: bool,
    /// The failed-check marks set: bit i for the mark at `FAILED_MARKS + i`.
    pub failed: u8,
}

/// A decoded, integrity-checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fields: Fields,
    pub marks: Marks,
    /// SHA-256 of the hashed part: the identity the next block links to.
    pub hash: Digest32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Every byte of the header is 0xFF: nothing was ever written here.
    Erased,
    BadMagic,
    UnsupportedVersion(u16),
    /// The stored header hash does not match: torn write or bit rot.
    HashMismatch,
    UnknownKind(u8),
    UnknownCompression(u8),
    /// A reserved byte that must be zero is not (a writer from the future, or corruption).
    ReservedNotZero,
    /// A mark byte is neither 0xFF nor 0x00, or the trial marks are not used in order.
    CorruptMark(usize),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Erased => f.write_str("erased (no block)"),
            HeaderError::BadMagic => f.write_str("bad magic"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            HeaderError::HashMismatch => f.write_str("header hash mismatch (torn or corrupt)"),
            HeaderError::UnknownKind(k) => write!(f, "unknown block type {k}"),
            HeaderError::UnknownCompression(c) => write!(f, "unknown compression {c}"),
            HeaderError::ReservedNotZero => f.write_str("reserved header bytes not zero"),
            HeaderError::CorruptMark(at) => write!(f, "corrupt mark byte at header offset {at:#x}"),
        }
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn sha256(data: &[u8]) -> Digest32 {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(data));
    out
}

impl Fields {
    /// The sealed bytes (0..192) to program at the block's start; bytes 192..256 stay erased.
    pub fn seal(&self) -> [u8; SEALED_LEN] {
        let mut b = [0u8; SEALED_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[0x08..0x0A].copy_from_slice(&VERSION.to_le_bytes());
        b[0x0A] = self.kind.to_byte();
        b[0x0B] = self.compression.to_byte();
        b[0x0C..0x10].copy_from_slice(&self.erase_size.to_le_bytes());
        b[0x10..0x12].copy_from_slice(&self.backbuf_blocks.to_le_bytes());
        b[0x12..0x14].copy_from_slice(&self.trial_budget.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.seq.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.generation.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&self.payload_len.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&self.unpacked_len.to_le_bytes());
        b[0x30..0x38].copy_from_slice(&self.created.to_le_bytes());
        b[0x38..0x40].copy_from_slice(&self.nonce);
        b[0x40..0x60].copy_from_slice(&self.payload_sha256);
        b[0x60..0x80].copy_from_slice(&self.prev);
        // 0x80..0xA0 reserved, zero.
        let hash = sha256(&b[..HASHED_LEN]);
        b[HASHED_LEN..SEALED_LEN].copy_from_slice(&hash);
        b
    }

    /// The header hash these fields will have once sealed.
    pub fn hash(&self) -> Digest32 {
        let sealed = self.seal();
        let mut h = [0u8; 32];
        h.copy_from_slice(&sealed[HASHED_LEN..SEALED_LEN]);
        h
    }
}

/// Decodes and checks a 256-byte header as read from flash.
pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
    if b.iter().all(|&x| x == 0xFF) {
        return Err(HeaderError::Erased);
    }
    if b[0..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    // The hash is checked before any field is trusted, the version included.
    if sha256(&b[..HASHED_LEN])[..] != b[HASHED_LEN..SEALED_LEN] {
        return Err(HeaderError::HashMismatch);
    }
    let version = le_u16(b, 0x08);
    if version != VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let kind = Kind::from_byte(b[0x0A]).ok_or(HeaderError::UnknownKind(b[0x0A]))?;
    let compression =
        Compression::from_byte(b[0x0B]).ok_or(HeaderError::UnknownCompression(b[0x0B]))?;
    if b[0x80..HASHED_LEN].iter().any(|&x| x != 0) {
        return Err(HeaderError::ReservedNotZero);
    }
    let marks = decode_marks(b)?;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[HASHED_LEN..SEALED_LEN]);
    Ok(Header {
        fields: fields(b, kind, compression),
        marks,
        hash,
    })
}

/// The fields as a writer lays them out, given the kind and compression bytes decoded.
fn fields(b: &[u8; HEADER_LEN], kind: Kind, compression: Compression) -> Fields {
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&b[0x38..0x40]);
    let mut payload_sha256 = [0u8; 32];
    payload_sha256.copy_from_slice(&b[0x40..0x60]);
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&b[0x60..0x80]);
    Fields {
        kind,
        compression,
        erase_size: le_u32(b, 0x0C),
        backbuf_blocks: le_u16(b, 0x10),
        trial_budget: le_u16(b, 0x12),
        seq: le_u32(b, 0x14),
        generation: le_u64(b, 0x18),
        payload_len: le_u64(b, 0x20),
        unpacked_len: le_u64(b, 0x28),
        created: le_u64(b, 0x30),
        nonce,
        payload_sha256,
        prev,
    }
}

/// The fields of a header that does not decode (its hash fails: torn or rotted), read as a
/// writer lays them out when the magic, version, kind and compression still parse. Nothing
/// here is trusted: salvage only, where a payload whose SHA-256 matches `payload_sha256`
/// proves the length and the hash, and so the payload, intact.
pub fn unchecked_fields(b: &[u8; HEADER_LEN]) -> Option<Fields> {
    if b[0..8] != MAGIC || le_u16(b, 0x08) != VERSION {
        return None;
    }
    let kind = Kind::from_byte(b[0x0A])?;
    let compression = Compression::from_byte(b[0x0B])?;
    Some(fields(b, kind, compression))
}

/// Which block a header is when it is sealed (its hash matches, version 1) but does not decode
/// for a mark, its reserved bytes or its compression: its kind, `prev`, and whether its live
/// mark is dropped. Only a writer seals a hash, so these bytes are what it wrote; the walk needs
/// them to tell a linked, live snapshot (nothing above it boots) from a stale block. `None` for
/// any other header.
pub fn sealed_identity(b: &[u8; HEADER_LEN]) -> Option<(Kind, Digest32, bool)> {
    if b[0..8] != MAGIC
        || sha256(&b[..HASHED_LEN])[..] != b[HASHED_LEN..SEALED_LEN]
        || le_u16(b, 0x08) != VERSION
    {
        return None;
    }
    let kind = Kind::from_byte(b[0x0A])?;
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&b[0x60..0x80]);
    Some((kind, prev, dropped(b[LIVE_MARK])))
}

/// Whether a live mark says dropped even though it is not exactly 0x00: two bits or more
/// cleared. A drop is one single-byte program (0xFF to 0x00); an erase of the block cut in its
/// first instant raises a few bits of it again. One bit cleared is rot of a live mark.
pub fn dropped(live_mark: u8) -> bool {
    (live_mark ^ MARK_CLEAR).count_ones() > 1
}

/// Marks are strict: a byte is 0xFF or 0x00, trial marks are consumed in order, and the unused
/// tail is erased. Single-byte programs cannot tear, so anything else is corruption.
fn decode_marks(b: &[u8; HEADER_LEN]) -> Result<Marks, HeaderError> {
    let bit = |at: usize| match b[at] {
        MARK_CLEAR => Ok(false),
        MARK_SET => Ok(true),
        _ => Err(HeaderError::CorruptMark(at)),
    };
    let dropped = bit(LIVE_MARK)?;
    let confirmed = bit(CONFIRM_MARK)?;
    let mut trials_used = 0u8;
    let mut seen_clear = false;
    for i in 0..TRIAL_MARKS_LEN {
        let at = TRIAL_MARKS + i;
        if bit(at)? {
            if seen_clear {
                return Err(HeaderError::CorruptMark(at));
            }
            trials_used += 1;
        } else {
            seen_clear = true;
        }
    }
    let sealed = bit(SEALED_MARK)?;
    let mut failed = 0u8;
    for i in 0..FAILED_MARKS_LEN {
        if bit(FAILED_MARKS + i)? {
            failed |= 1 << i;
        }
    }
    for (i, &x) in b.iter().enumerate().skip(FAILED_MARKS + FAILED_MARKS_LEN) {
        if x != MARK_CLEAR {
            return Err(HeaderError::CorruptMark(i));
        }
    }
    Ok(Marks {
        live: !dropped,
        confirmed,
        trials_used,
        sealed,
        failed,
    })
}

/// Where a block stands in its trial (docs/FORMAT.md, "Trial boots").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// Written with no trial (budget 0), or confirmed: boots without spending anything.
    Confirmed,
    /// Not confirmed yet; `used` of `budget` boots spent. While `used` < `budget` the boot path
    /// boots it and spends one more mark; at `used` == `budget` its last allowed boot is the
    /// one running (it can still be confirmed), and the next boot rolls it back.
    OnTrial { used: u8, budget: u16 },
    /// Rolled back: a boot found every allowed boot spent unconfirmed and spent one more mark
    /// to say so. The walk leaves it out, with everything above it.
    Exhausted { budget: u16 },
}

/// Most boots a block can be given on trial: one trial mark each, and one more mark for the
/// boot that rolls it back.
pub const MAX_TRIAL_BUDGET: u16 = TRIAL_MARKS_LEN as u16 - 1;

/// Bytes of file data a block may unpack to per byte of flash it takes (FORMAT.md, "Validity
/// of a block", step 7). Real trees compress 1.5x to 7x; a sparse or zero-filled file compresses
/// up to 1032x, and every byte of it costs the boot inflating it. The cap bounds the file data
/// a boot unpacks to 64 times the partition, and a tar header announces its size, so a file
/// over the cap is refused before any of it is inflated. Headers are not counted: a tree of
/// thousands of empty files legitimately unpacks to 100x its flash, all of it headers.
pub const MAX_DATA_PER_FLASH_BYTE: u64 = 64;

/// The most file data a block with `payload_len` payload bytes laid out for `erase_size` may
/// unpack to: [`MAX_DATA_PER_FLASH_BYTE`] times the erase blocks it spans. A plain payload
/// always fits (its file data is part of its own bytes). Saturates on absurd lengths, which
/// the bounds checks reject anyway.
pub fn data_limit(payload_len: u64, erase_size: u32) -> u64 {
    span_blocks(payload_len, erase_size)
        .saturating_mul(u64::from(erase_size.max(1)))
        .saturating_mul(MAX_DATA_PER_FLASH_BYTE)
}

impl Header {
    /// Erase blocks the block occupies, header included.
    pub fn span_blocks(&self) -> u64 {
        span_blocks(self.fields.payload_len, self.fields.erase_size)
    }

    /// The most file data this block's payload may unpack to ([`data_limit`]).
    pub fn data_limit(&self) -> u64 {
        data_limit(self.fields.payload_len, self.fields.erase_size)
    }

    /// The block's trial state, from its budget and its marks.
    pub fn trial(&self) -> Trial {
        let budget = self.fields.trial_budget.min(MAX_TRIAL_BUDGET);
        if budget == 0 || self.marks.confirmed {
            Trial::Confirmed
        } else if u16::from(self.marks.trials_used) <= budget {
            Trial::OnTrial {
                used: self.marks.trials_used,
                budget,
            }
        } else {
            Trial::Exhausted { budget }
        }
    }

    /// On trial with every allowed boot spent: the boot that finds it so rolls it back.
    pub fn trial_spent(&self) -> bool {
        matches!(self.trial(), Trial::OnTrial { used, budget } if u16::from(used) >= budget)
    }
}

/// Erase blocks needed by a block with `payload_len` payload bytes. `payload_len` comes from
/// flash and may be anything: the sum saturates, so an absurd length gives an absurd span that
/// every bounds check then rejects, never an overflow.
pub fn span_blocks(payload_len: u64, erase_size: u32) -> u64 {
    let total = (HEADER_LEN as u64).saturating_add(payload_len);
    let e = u64::from(erase_size.max(1));
    total.div_ceil(e)
}

/// What a header that does not decode says about how it got that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// It was written whole once and has changed since: its hash still matches but a mark or a
    /// field is invalid, or its sealed mark is set (the header program completed) while the
    /// hash no longer matches. Bit rot or tampering: the block is data.
    Sealed(HeaderError),
    /// Consistent with a header program cut by a power loss over erased flash, or an erase cut
    /// over a header: every bit that is 1 in the magic is 1 (a cut program only fails to clear
    /// bits, a cut erase only sets them), and it is not sealed; or a dropped header (its live
    /// mark programmed) that has changed since: garbage either way.
    Torn,
    /// Not a snapinit header at all.
    Foreign,
}

fn bits_off(a: u8, b: u8) -> u32 {
    (a ^ b).count_ones()
}

/// Classifies a header that `decode` rejected (not for erased headers: `decode` says `Erased`).
pub fn damage(b: &[u8; HEADER_LEN]) -> Damage {
    // A dropped header (its live mark programmed: more than rot of a live one) is garbage
    // whatever has changed in it since: the writer drops a live header before it erases it,
    // so an erase cut in its first instant (a few bits raised) reads as a dropped block, not
    // as damage to data.
    let dropped = dropped(b[LIVE_MARK]);
    match decode(b) {
        Ok(_) | Err(HeaderError::Erased) => return Damage::Torn,
        Err(HeaderError::BadMagic) | Err(HeaderError::HashMismatch) => {}
        Err(_) if dropped => return Damage::Torn,
        // The hash matched: the sealed part is exactly what a writer sealed.
        Err(e) => return Damage::Sealed(e),
    }
    let magic_off: u32 = b[..8]
        .iter()
        .zip(MAGIC.iter())
        .map(|(&x, &m)| bits_off(x, m))
        .sum();
    if magic_off <= 1 && bits_off(b[SEALED_MARK], MARK_SET) <= 1 && !dropped {
        let e = if magic_off == 0 {
            HeaderError::HashMismatch
        } else {
            HeaderError::BadMagic
        };
        return Damage::Sealed(e);
    }
    // A cut program only fails to clear bits; a cut erase only sets them.
    let magic_superset = b[..8].iter().zip(MAGIC.iter()).all(|(&x, &m)| x & m == m);
    if magic_superset || (dropped && magic_off <= 1) {
        Damage::Torn
    } else {
        Damage::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            kind: Kind::Volatile,
            compression: Compression::Gzip,
            erase_size: 65536,
            backbuf_blocks: 4,
            trial_budget: 3,
            seq: 7,
            generation: 0x0102_0304_0506_0708,
            payload_len: 1234,
            unpacked_len: 10240,
            created: 1_700_000_000,
            nonce: [9; 8],
            payload_sha256: [0xAB; 32],
            prev: [0xCD; 32],
        }
    }

    #[test]
    fn the_data_bound_is_64_times_the_erase_blocks_a_block_spans() {
        // One erase block holds the header and up to E - 256 payload bytes.
        assert_eq!(data_limit(0, 65536), 64 * 65536);
        assert_eq!(data_limit(65536 - 256, 65536), 64 * 65536);
        assert_eq!(data_limit(65536 - 255, 65536), 2 * 64 * 65536);
        // UBI's LEB sizes are not powers of two.
        assert_eq!(data_limit(100_000, 65408), 2 * 64 * 65408);
        // Without a geometry (bundles): the header and payload bytes alone, the least room.
        assert_eq!(data_limit(1000, 1), 64 * 1256);
        assert_eq!(data_limit(1000, 0), 64 * 1256);
        // A length from flash may be anything: it saturates, never wraps.
        assert_eq!(data_limit(u64::MAX, 65536), u64::MAX);
    }

    fn full(f: &Fields) -> [u8; HEADER_LEN] {
        let mut b = [0xFFu8; HEADER_LEN];
        b[..SEALED_LEN].copy_from_slice(&f.seal());
        b
    }

    #[test]
    fn round_trip() {
        let f = fields();
        let h = decode(&full(&f)).expect("valid header");
        assert_eq!(h.fields, f);
        assert_eq!(h.hash, f.hash());
        assert!(h.marks.live && !h.marks.confirmed && h.marks.trials_used == 0);
    }

    #[test]
    fn byte_order_is_fixed() {
        let b = full(&fields());
        assert_eq!(&b[0x18..0x20], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[0x0C..0x10], &[0, 0, 1, 0]);
    }

    #[test]
    fn marks_move_state() {
        let mut b = full(&fields());
        b[TRIAL_MARKS] = MARK_SET;
        b[TRIAL_MARKS + 1] = MARK_SET;
        assert_eq!(decode(&b).map(|h| h.marks.trials_used), Ok(2));
        b[LIVE_MARK] = MARK_SET;
        assert_eq!(decode(&b).map(|h| h.marks.live), Ok(false));
        b[TRIAL_MARKS + 5] = MARK_SET;
        assert_eq!(decode(&b), Err(HeaderError::CorruptMark(TRIAL_MARKS + 5)));
    }

    #[test]
    fn failed_check_marks_decode_and_the_rest_stays_reserved() {
        let mut b = full(&fields());
        assert_eq!(decode(&b).map(|h| h.marks.failed), Ok(0));
        b[FAILED_MARKS + 2] = MARK_SET;
        assert_eq!(decode(&b).map(|h| h.marks.failed), Ok(0b100));
        b[FAILED_MARKS] = MARK_SET;
        assert_eq!(decode(&b).map(|h| h.marks.failed), Ok(0b101));
        let mut torn = b;
        torn[FAILED_MARKS + 1] = 0x7F;
        assert_eq!(
            decode(&torn),
            Err(HeaderError::CorruptMark(FAILED_MARKS + 1))
        );
        b[FAILED_MARKS + FAILED_MARKS_LEN] = MARK_SET;
        assert_eq!(
            decode(&b),
            Err(HeaderError::CorruptMark(FAILED_MARKS + FAILED_MARKS_LEN))
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let good = full(&fields());
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip {byte}:{bit} accepted");
            }
        }
    }

    /// A header as the writer leaves it: sealed part, then the sealed mark.
    fn sealed(f: &Fields) -> [u8; HEADER_LEN] {
        let mut b = full(f);
        b[SEALED_MARK] = MARK_SET;
        b
    }

    #[test]
    fn the_sealed_mark_decodes() {
        let b = sealed(&fields());
        assert_eq!(decode(&b).map(|h| h.marks.sealed), Ok(true));
        assert_eq!(decode(&full(&fields())).map(|h| h.marks.sealed), Ok(false));
    }

    #[test]
    fn every_bit_flip_of_a_sealed_header_is_damage_to_data() {
        let good = sealed(&fields());
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                assert!(
                    matches!(damage(&b), Damage::Sealed(_)),
                    "flip {byte}:{bit} reads as {:?}",
                    damage(&b)
                );
            }
        }
    }

    #[test]
    fn a_cut_header_program_is_torn_not_data() {
        let f = fields();
        let seal = f.seal();
        // Every prefix of the sealed program over erased flash.
        for n in 1..SEALED_LEN {
            let mut b = [0xFFu8; HEADER_LEN];
            b[..n].copy_from_slice(&seal[..n]);
            assert_eq!(damage(&b), Damage::Torn, "prefix {n}");
        }
        // Some of the bits that should clear did, at random.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..200 {
            let mut b = [0xFFu8; HEADER_LEN];
            for (i, &x) in seal.iter().enumerate() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b[i] = x | (state as u8);
            }
            if decode(&b).is_ok() {
                continue;
            }
            assert_eq!(damage(&b), Damage::Torn, "random tear {round}");
        }
    }

    #[test]
    fn a_cut_erase_of_a_header_is_torn_and_foreign_data_is_foreign() {
        let mut b = sealed(&fields());
        b[LIVE_MARK] = MARK_SET;
        // An erase only sets bits: a prefix erased, or bits raised.
        for n in 1..HEADER_LEN {
            let mut c = b;
            c[..n].fill(0xFF);
            if decode(&c).is_ok() || c.iter().all(|&x| x == 0xFF) {
                continue;
            }
            assert_eq!(damage(&c), Damage::Torn, "erase prefix {n}");
        }
        let mut c = b;
        for (i, x) in c.iter_mut().enumerate() {
            *x |= (i as u8).wrapping_mul(37) | 0x21;
        }
        assert_eq!(damage(&c), Damage::Torn);
        assert_eq!(damage(&[0u8; HEADER_LEN]), Damage::Foreign);
        let mut ext = [0u8; HEADER_LEN];
        ext[0..4].copy_from_slice(&[0x53, 0xEF, 0x01, 0x00]);
        assert_eq!(damage(&ext), Damage::Foreign);
    }

    #[test]
    fn a_dropped_header_that_changed_is_garbage_a_live_one_is_data() {
        let good = sealed(&fields());
        let mut dropped = good;
        dropped[LIVE_MARK] = MARK_SET;
        // An erase cut in its first instant: one bit raised anywhere in the sealed part.
        for byte in 0..SEALED_LEN {
            for bit in 0..8 {
                let (mut d, mut l) = (dropped, good);
                d[byte] |= 1 << bit;
                l[byte] |= 1 << bit;
                if d[byte] == dropped[byte] {
                    continue;
                }
                assert_eq!(damage(&d), Damage::Torn, "dropped, {byte}:{bit} raised");
                assert!(
                    matches!(damage(&l), Damage::Sealed(_)),
                    "live, {byte}:{bit} raised: {:?}",
                    damage(&l)
                );
            }
        }
        // Rot of a live header that also took one bit of its live mark is still data.
        let mut l = good;
        l[LIVE_MARK] = 0xFE;
        l[0x19] ^= 0x04;
        assert!(matches!(damage(&l), Damage::Sealed(_)), "{:?}", damage(&l));
    }

    #[test]
    fn an_absurd_payload_len_does_not_overflow() {
        assert_eq!(span_blocks(u64::MAX, 4096), u64::MAX / 4096 + 1);
        assert_eq!(span_blocks(u64::MAX - 100, 1), u64::MAX);
        assert_eq!(span_blocks(5, 0), 261);
    }

    #[test]
    fn trial_state_follows_budget_and_marks() {
        let mut f = fields();
        f.trial_budget = 0;
        // No budget: confirmed, whatever the (erased) confirm mark says.
        assert_eq!(decode(&full(&f)).map(|h| h.trial()), Ok(Trial::Confirmed));
        f.trial_budget = 2;
        let mut b = full(&f);
        assert_eq!(
            decode(&b).map(|h| h.trial()),
            Ok(Trial::OnTrial { used: 0, budget: 2 })
        );
        b[TRIAL_MARKS] = MARK_SET;
        assert_eq!(
            decode(&b).map(|h| h.trial()),
            Ok(Trial::OnTrial { used: 1, budget: 2 })
        );
        b[TRIAL_MARKS + 1] = MARK_SET;
        // Its last allowed boot: still on trial (confirmable while it runs).
        assert_eq!(
            decode(&b).map(|h| h.trial()),
            Ok(Trial::OnTrial { used: 2, budget: 2 })
        );
        assert_eq!(decode(&b).map(|h| h.trial_spent()), Ok(true));
        // The boot after it spends one more mark to roll it back.
        b[TRIAL_MARKS + 2] = MARK_SET;
        assert_eq!(
            decode(&b).map(|h| h.trial()),
            Ok(Trial::Exhausted { budget: 2 })
        );
        // A confirmation wins, even after the last boot was spent.
        b[CONFIRM_MARK] = MARK_SET;
        assert_eq!(decode(&b).map(|h| h.trial()), Ok(Trial::Confirmed));
    }

    #[test]
    fn erased_is_not_corrupt() {
        assert_eq!(decode(&[0xFF; HEADER_LEN]), Err(HeaderError::Erased));
    }

    #[test]
    fn span() {
        assert_eq!(span_blocks(0, 4096), 1);
        assert_eq!(span_blocks(4096 - 256, 4096), 1);
        assert_eq!(span_blocks(4096 - 255, 4096), 2);
    }
}
