//! snapinit PID 1. The real program is `init::snapinit_main`, entered from
//! boot/<arch>.s; see src/init/mod.rs for the boot sequence.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![cfg_attr(not(any(feature = "std", test)), no_main)]
// global_asm! on MIPS (boot/mips.s) is still an unstable architecture for
// asm; the MIPS cross-build (qemu/cross.sh) uses RUSTC_BOOTSTRAP=1.
#![cfg_attr(target_arch = "mips", feature(asm_experimental_arch))]

#[cfg(not(any(feature = "std", test)))]
mod init;

/// Workspace builds unify the library's `std` feature (the userland needs
/// it), and `--all-targets` checks a test build of this binary: both get
/// this placeholder (PID 1 pure parts are tested via tests/init_*.rs).
#[cfg(any(feature = "std", test))]
fn main() {
    eprintln!("snapinit: built with the `std` feature; build PID 1 with `cargo build -p snapinit --release`");
    std::process::exit(2);
}
