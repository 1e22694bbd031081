//! Link flags for the PID 1 binary only: it brings its own `_start`
//! (boot/<arch>.s) and must be a static ELF with no interpreter.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=boot");
    // With the `std` feature (unified in by the userland crate in workspace
    // builds) the binary is a host stub built the ordinary way.
    let std = std::env::var_os("CARGO_FEATURE_STD").is_some();
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && !std {
        println!("cargo:rustc-link-arg-bins=-nostartfiles");
        println!("cargo:rustc-link-arg-bins=-static");
        // The link layout (linker/<arch>.ld says what it saves), where there
        // is one; other architectures link with the linker's default layout.
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let script = std::path::Path::new(&dir).join(format!("linker/{arch}.ld"));
        println!("cargo:rerun-if-changed=linker");
        if script.exists() {
            println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
            // No dynamic loader or libc would ever apply RELRO.
            println!("cargo:rustc-link-arg-bins=-Wl,-z,norelro");
        }
    }
}
