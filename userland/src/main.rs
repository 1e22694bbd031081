//! `snapshot`: manages snapinit's snapshot chain on a router's rootfs_data partition.
//! The reference is docs/SNAPSHOT.md; `snapshot --help` and `snapshot COMMAND --help` summarise it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
