//! The probe is copied into every rootfs with the shared libraries it links to. Those
//! libraries go to the rootfs's `/lib`, and this run path tells the dynamic loader to
//! look there, so the rootfs has the same layout whichever distribution built it.
fn main() {
    println!("cargo:rustc-link-arg-bin=probe=-Wl,-rpath,$ORIGIN/../lib");
    println!("cargo:rerun-if-changed=build.rs");
}
