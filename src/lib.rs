//! snapinit's format and read path: `no_std`, no heap.
#![no_std]
