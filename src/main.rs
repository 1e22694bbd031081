//! snapinit PID 1. The real program is `init::snapinit_main`, entered from
//! boot/<arch>.s; see src/init/mod.rs for the boot sequence.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![cfg_attr(not(any(feature = "std", test)), no_main)]
// global_asm! on MIPS (boot/mips.s) is still an unstable architecture for
// asm; the MIPS cross-build (qemu/cross.sh) uses RUSTC_BOOTSTRAP=1.
#![cfg_attr(target_arch = "mips", feature(asm_experimental_arch))]

#[cfg(not(any(feature = "std", test)))]
mod init;

/// Builds that also select the userland (`--workspace`) unify `std` into the crates PID 1
/// shares with it, and `--all-targets` checks a test build of this binary: both get this
/// placeholder (PID 1's pure parts are tested via tests/init_*.rs). Should one ever be
/// installed as init, it must not brick the box: as PID 1 it hands over to /sbin/init on the
/// read-only root, saying why.
#[cfg(any(feature = "std", test))]
fn main() {
    eprintln!("snapinit: this is a placeholder built with the `std` feature; build PID 1 with `cargo build --release` at the workspace root (or `-p snapinit`)");
    if std::process::id() == 1 {
        use std::os::unix::process::CommandExt;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let e = std::process::Command::new("/sbin/init").args(args).exec();
        eprintln!("snapinit placeholder: exec /sbin/init failed: {e}");
    }
    std::process::exit(2);
}
