//! snapinit PID 1. The real program is `init::snapinit_main`, entered from
//! boot/<arch>.s; see src/init/mod.rs for the boot sequence.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(not(feature = "std"), no_main)]

#[cfg(not(feature = "std"))]
mod init;

/// Workspace builds unify the library's `std` feature (the userland needs
/// it); that build of this binary is only a placeholder so they still link.
#[cfg(feature = "std")]
fn main() {
    eprintln!("snapinit: built with the `std` feature; build PID 1 with `cargo build -p snapinit --release`");
    std::process::exit(2);
}
