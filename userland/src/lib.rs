//! The `snapshot` tool as a library: every write to snapinit's chain, and the archive side
//! (packing an overlay upper directory into a payload and back).

#[cfg(feature = "fleet")]
pub mod fleet;
pub mod gzip;
pub mod hex;
pub mod model;
pub mod pack;
pub mod unpack;
pub mod writer;
