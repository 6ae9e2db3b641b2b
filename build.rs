//! Two link settings, both about what the dynamic loader does before `main`.
//!
//! The probe is copied into every rootfs with the shared libraries it links to. Those
//! libraries go to the rootfs's `/lib`, and its run path tells the dynamic loader to
//! look there, so the rootfs has the same layout whichever distribution built it.
//!
//! Every program here links libgcc's unwinder statically. Rust's standard library
//! unwinds panics with it, and rustc links the shared copy, libgcc_s.so.1, unless the
//! whole program is static. That is one more library for the loader to find, map,
//! relocate and search at every start, which a C program does not load: about 0.1 ms
//! on a virtual machine, a tenth of a process's start-up there. The same unwinder
//! comes as an archive, libgcc_eh.a, which is what `gcc -static-libgcc` and rustc's
//! own static builds use. A linker script named libgcc_s.so, in a directory the
//! linker searches first, stands in for the shared library and names the archive.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-link-arg-bin=probe=-Wl,-rpath,$ORIGIN/../lib");
    static_unwinder();
    println!("cargo:rerun-if-changed=build.rs");
}

fn static_unwinder() {
    let var = |name| std::env::var(name).unwrap_or_default();
    // Only for a GNU/Linux target built on itself: `cc` below is the host's compiler.
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("TARGET") != var("HOST")
    {
        return;
    }
    // `cc` is the linker rustc calls. It prints the archive's full path, or only its
    // name when it has none (then the shared library stays).
    let Ok(found) = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !archive.is_absolute() || !archive.is_file() {
        return;
    }
    let dir = Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("unwind");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/unwind");
    std::fs::write(
        dir.join("libgcc_s.so"),
        format!("INPUT(\"{}\")\n", archive.display()),
    )
    .expect("write OUT_DIR/unwind/libgcc_s.so");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
