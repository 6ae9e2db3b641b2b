//! Step 10's plumbing: what is not the lesson of measuring, one job per file.
//!
//! - [`table`]: the rows, how each takes a sample, and the text table;
//!   [`json`] and [`svg`]: the same table as data and as a chart;
//! - [`machine`]: a one-line description of where the numbers come from;
//! - [`lab`]: the reference step binaries next to the running program, and a fresh
//!   rootfs in a temporary directory that is removed however the program ends;
//! - [`peak`]: run a process and learn its peak resident memory (and, for
//!   `--break wait4`, the peak wait4(2) reports);
//! - [`interrupt`]: Ctrl-C between two runs still cleans up.

pub mod interrupt;
pub mod json;
pub mod lab;
pub mod machine;
pub mod peak;
pub mod svg;
pub mod table;

pub use interrupt::{catch_interrupts, check_interrupted};
pub use lab::Lab;
pub use machine::Machine;
pub use peak::{Finished, MaxRss, has_exited, run_with_maxrss, run_with_peak_memory, value_of};
pub use table::*;
