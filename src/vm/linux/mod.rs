//! # A real Linux kernel in the lab
//!
//! Steps 06-07's guests are a few hundred bytes of our own. This boots a real one.

pub mod cpio;
pub mod kernel;

pub use kernel::Kernel;
