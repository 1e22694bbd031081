//! Whether JFFS2 keeps anything in an erase block: what `convert` must know before it stages
//! the overlay in the blocks at the partition's end, while the JFFS2 is still the only copy.
//!
//! A JFFS2 node never crosses an erase block, and each starts at a 4-byte boundary with a
//! 12-byte header: the magic 0x1985, the node type, the total length, and a CRC of the first
//! 8 bytes, in the byte order of the CPU that wrote them. JFFS2 reads a node only where that
//! CRC holds, and skips anything else as dirty space (Linux, `fs/jffs2/scan.c`). A free block
//! holds at most a cleanmarker (NOR, at its start) and padding: a block with no node of
//! another type holds nothing of the filesystem. A block whose erase was cut short, or junk
//! that only looks like a node, then counts as free exactly as JFFS2 counts it.

use snapinit::gzip::{crc_tables, Crc32, CrcTables};

const MAGIC: u16 = 0x1985;
const CLEANMARKER: u16 = 0x2003;
const PADDING: u16 = 0x2004;
const NODE_HEADER: usize = 12;

/// Whether `block` (one whole erase block) holds a JFFS2 node other than a cleanmarker or
/// padding, in either byte order.
pub fn holds_nodes(block: &[u8]) -> bool {
    let tables = crc_tables();
    (0..block.len().saturating_sub(NODE_HEADER - 1))
        .step_by(4)
        .any(|at| node_at(&tables, &block[at..at + NODE_HEADER]))
}

/// A node header other than a cleanmarker or padding, little- or big-endian.
fn node_at(tables: &CrcTables, h: &[u8]) -> bool {
    let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let be = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    if le(0) != MAGIC && be(0) != MAGIC {
        return false;
    }
    let crc = jffs2_crc(tables, &h[..8]);
    let le_node = le(0) == MAGIC
        && ![CLEANMARKER, PADDING].contains(&le(2))
        && crc == u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let be_node = be(0) == MAGIC
        && ![CLEANMARKER, PADDING].contains(&be(2))
        && crc == u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    le_node || be_node
}

/// Whether `h` (at least 12 bytes) starts with a JFFS2 node header of any type, cleanmarker,
/// padding and obsolete nodes included, in either byte order: the magic, and the header CRC as
/// JFFS2's scan checks it (over the type with `JFFS2_NODE_ACCURATE` set again, which marking a
/// node obsolete clears). Two bytes of magic alone start one erase block in 2^15 of random data.
pub fn starts_with_node(h: &[u8]) -> bool {
    const ACCURATE: u16 = 0x2000;
    if h.len() < NODE_HEADER {
        return false;
    }
    let tables = crc_tables();
    let check = |magic: [u8; 2], kind: [u8; 2], crc: u32, le: bool| {
        let kind = if le {
            (u16::from_le_bytes(kind) | ACCURATE).to_le_bytes()
        } else {
            (u16::from_be_bytes(kind) | ACCURATE).to_be_bytes()
        };
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&magic);
        b[2..4].copy_from_slice(&kind);
        b[4..8].copy_from_slice(&h[4..8]);
        jffs2_crc(&tables, &b) == crc
    };
    let magic = [h[0], h[1]];
    let kind = [h[2], h[3]];
    let crc = [h[8], h[9], h[10], h[11]];
    (u16::from_le_bytes(magic) == MAGIC && check(magic, kind, u32::from_le_bytes(crc), true))
        || (u16::from_be_bytes(magic) == MAGIC
            && check(magic, kind, u32::from_be_bytes(crc), false))
}

/// JFFS2's CRC: the kernel's `crc32(0, ...)`, the CRC-32 register without the customary
/// inversions at either end.
fn jffs2_crc(tables: &CrcTables, bytes: &[u8]) -> u32 {
    let mut c = Crc32::with_register(0);
    c.update(tables, bytes);
    c.register()
}

#[cfg(test)]
mod tests {
    use super::{holds_nodes, jffs2_crc};
    use snapinit::gzip::crc_tables;

    /// A node header of `kind`, sealed with its CRC, little- or big-endian.
    fn node(kind: u16, little: bool) -> Vec<u8> {
        let mut h = Vec::new();
        let (m, k, len) = if little {
            (
                0x1985u16.to_le_bytes(),
                kind.to_le_bytes(),
                12u32.to_le_bytes(),
            )
        } else {
            (
                0x1985u16.to_be_bytes(),
                kind.to_be_bytes(),
                12u32.to_be_bytes(),
            )
        };
        h.extend_from_slice(&m);
        h.extend_from_slice(&k);
        h.extend_from_slice(&len);
        let crc = jffs2_crc(&crc_tables(), &h);
        h.extend_from_slice(&if little {
            crc.to_le_bytes()
        } else {
            crc.to_be_bytes()
        });
        h
    }

    fn block_with(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFF; 4096];
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn the_crc_is_the_kernels() {
        // mkfs.jffs2 -l's cleanmarker: 85 19 03 20 0c 00 00 00, then its CRC b1 b0 1e e4.
        assert_eq!(
            jffs2_crc(&crc_tables(), &[0x85, 0x19, 0x03, 0x20, 0x0c, 0, 0, 0]),
            0xe41e_b0b1
        );
        assert_eq!(node(0x2003, true)[8..], [0xb1, 0xb0, 0x1e, 0xe4]);
    }

    #[test]
    fn free_blocks_hold_no_nodes() {
        assert!(!holds_nodes(&[0xFF; 4096]));
        assert!(!holds_nodes(&[0x00; 4096]));
        for little in [true, false] {
            assert!(!holds_nodes(&block_with(0, &node(0x2003, little))));
            assert!(!holds_nodes(&block_with(12, &node(0x2004, little))));
        }
    }

    #[test]
    fn any_other_node_is_data() {
        // An inode (0xE002) and a dirent (0xE001), anywhere on a 4-byte boundary up to the
        // block's end, either order; an obsolete node (ACCURATE bit cleared: 0xC002) too.
        for (at, kind, little) in [(0, 0xE002, true), (4084, 0xE001, false), (12, 0xC002, true)] {
            assert!(
                holds_nodes(&block_with(at, &node(kind, little))),
                "{at}: {kind:#x}"
            );
        }
        // Off a 4-byte boundary, or with a broken CRC (junk, a torn erase): JFFS2 reads no
        // node there either.
        assert!(!holds_nodes(&block_with(2, &node(0xE002, true))));
        let mut torn = node(0xE002, true);
        torn[9] ^= 0x10;
        assert!(!holds_nodes(&block_with(0, &torn)));
        // A cleanmarker whose type a cut erase turned into another type is junk too.
        let mut cut = node(0x2003, true);
        cut[2] |= 0x04;
        assert!(!holds_nodes(&block_with(0, &cut)));
    }

    #[test]
    fn a_node_start_needs_its_header_crc() {
        for little in [true, false] {
            // A cleanmarker, a padding node and an inode (NOR's JFFS2 starts every erase block
            // it uses with one of them).
            for kind in [0x2003u16, 0x2004, 0xE002] {
                let h = node(kind, little);
                assert!(super::starts_with_node(&h), "{kind:#x} {little}");
                // Marked obsolete (JFFS2_NODE_ACCURATE cleared) after the CRC was sealed.
                let mut obsolete = h.clone();
                let k = if little { 3 } else { 2 };
                obsolete[k] &= !0x20;
                assert!(super::starts_with_node(&obsolete), "obsolete {kind:#x}");
                // The magic with any other byte wrong is no node.
                let mut bad = h.clone();
                bad[5] ^= 1;
                assert!(!super::starts_with_node(&bad));
            }
        }
        assert!(!super::starts_with_node(&[0x85, 0x19, 0x03, 0x20]));
    }
}
