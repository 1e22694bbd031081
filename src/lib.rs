//! snapinit's on-flash format and read path, shared by PID 1 and the `snapshot` tool.
//!
//! `no_std` and heap-free: data flows one way, flash -> chain -> verified block -> payload
//! stream. The `sim` feature adds a power-cut simulator for tests (it needs a heap).
#![no_std]

pub mod chain;
pub mod cpath;
pub mod device;
pub mod dirlayer;
pub mod file;
pub mod flash;
pub mod gzip;
pub mod header;
pub mod locate;
pub mod mtd;
pub mod payload;
pub mod replay;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tar;
pub mod text;
pub mod trial;
pub mod ubi;
#[cfg(feature = "sim")]
pub mod ubi_sim;

pub use chain::{read_chain, Block, ChainView};
