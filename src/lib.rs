//! # isolab: the toolkit every step shares
//!
//! The lessons live in `solutions/` (and the learner's copies in `chapters/`). This
//! crate holds what is plumbing rather than lesson: building a root filesystem,
//! the host canary, the command-line pieces every step takes, running a `main` that
//! prints errors as one line, the hypervisor steps' plumbing (guest memory, the
//! shared run structure, decoded exits and their trace), step 10's (a small VMM to
//! time, the table, its JSON and its chart), a real Linux guest under QEMU
//! ([`vm::linux`]), and the workshop's own bookkeeping (the steps, the exercise
//! generator, reading probe reports).

pub mod cli;
pub mod container;
pub mod lines;
pub mod measure;
pub mod run;
pub mod vm;
pub mod workshop;

pub use run::{Command, in_child, main};

/// What every step file imports: the toolkit's pieces and the crates they use.
pub mod prelude {
    pub use crate::cli::{CommandArgs, HostnameArg, LimitArgs, RootfsArg};
    pub use crate::run::{Command, in_child};
    pub use anyhow::{Context, Result, bail};
    pub use clap::Parser;
    pub use nix::sys::wait::{WaitStatus, waitpid};
    pub use nix::unistd::{ForkResult, Pid, fork};
    pub use std::convert::Infallible;
    pub use std::path::{Path, PathBuf};
    pub use std::process::ExitCode;
}
