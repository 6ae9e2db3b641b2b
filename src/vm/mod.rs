//! The VM world: machines with a kernel of their own.
//!
//! - [`linux`]: a real Linux kernel under QEMU, booted from an initramfs we build,
//!   running commands (the probe, the container steps) and reporting back.

pub mod linux;
