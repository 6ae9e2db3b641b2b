//! `isolab`: the workshop's command line. Tour the finished steps, see where you
//! are, check your own steps, get a hint, catch up, and see what this machine can do.
//!
//! Building always happens as you; only running a step that needs root goes through
//! sudo, so no file in your checkout ever becomes root's.

mod cargo;
mod doctor;
mod duplicates;
mod guest;
mod learner;
mod maint;
mod privilege;
mod terminal;
mod tour;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use isolab::workshop::steps::{self, STEPS, Step};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

pub use doctor::kvm_status;

/// isolab: build process isolation one layer at a time, then a tiny hypervisor.
///
/// Start with `cargo run -- tour` to see every finished step at work and `cargo run -- doctor`
/// to see what your machine offers. Then, for each step: read its chapter, fill in
/// the todo!()s in chapters/NN-*.rs, and `cargo run -- check N`. `cargo run -- list` shows
/// where you are.
#[derive(Parser)]
#[command(version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every reference step with the probe inside and print which walls exist
    Tour,
    /// Check what this machine offers: root, namespaces, cgroups, /dev/kvm, busybox, QEMU and a guest kernel
    Doctor,
    /// Every step, and how far you are with each (runs the checks of started steps)
    List,
    /// Test your step N (chapters/NN-*.rs) against the reference's snapshots
    Check {
        /// The step's number, e.g. 1 for chapters/01-chroot.rs
        #[arg(value_parser = step_number)]
        step: u8,
    },
    /// What to write in step N: one level more each time you ask (the goal, the
    /// system calls, their arguments)
    Hint {
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
        /// Show levels 1 to LEVEL, without counting them as used
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
        level: Option<u8>,
    },
    /// Put the untouched skeleton of step N back (your version is kept as a backup)
    Reset {
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
        /// The challenge skeleton instead: its TODOs say only what to achieve
        #[arg(long)]
        challenge: bool,
        /// Do not ask first
        #[arg(long)]
        yes: bool,
    },
    /// Put the reference solution in chapters/ for step N, to catch up (your version
    /// is kept as a backup)
    Solve {
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
        /// Do not ask first
        #[arg(long)]
        yes: bool,
    },
    /// Build a fresh rootfs and run your step N in it: `cargo run -- run 4 --memory 64m -- /bin/sh`
    ///
    /// Everything after N goes to your step's binary; without `--` it runs the probe.
    #[command(allow_hyphen_values = true)]
    Run {
        /// Run the reference of step N instead of your own (to compare, or to see a
        /// step you have not written yet)
        #[arg(long)]
        reference: bool,
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
        /// Arguments for the step, then `--` and the command to run in the box
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Build a minimal root filesystem in DIR (the probe, its libraries, busybox if present)
    Rootfs {
        /// A new or empty directory
        dir: PathBuf,
    },
    /// Download the Linux guest's kernel (Debian's cloud kernel) into your cache,
    /// for the tests that boot a real kernel under QEMU
    GuestKernel,
    /// Boot a real Linux kernel (the guest kernel) under QEMU and run the probe in
    /// it: a VM's own kernel, next to the host's
    Guest {
        /// The guest's memory, in MiB
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(128..=4096))]
        memory: u32,
        /// The guest's CPUs
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
        cpus: u32,
    },
    /// Build the book in English and in Korean (한국어판): book/book/index.html and
    /// book/book/ko/index.html, each page linking to the other language's
    Book,
    /// Maintainer tasks: regenerate the skeletons, check the book
    #[command(hide = true, subcommand)]
    Dev(Dev),
}

#[derive(Subcommand)]
enum Dev {
    /// Regenerate chapters/ from solutions/ (with --check: fail if they differ)
    SyncChapters {
        #[arg(long)]
        check: bool,
    },
    /// Check that every {{#include}} in the book names a file and anchor that
    /// exist, that every link between pages and to images resolves, that every
    /// diagram has its own background, and that no code line is wider than the
    /// code box
    CheckBook,
    /// Check that no function body is written twice outside chapters/
    CheckDuplicates,
    /// Extract the book's text into book/po/messages.pot and merge it into
    /// book/po/ko.po; with --check, change nothing and fail if ko.po has an
    /// untranslated or fuzzy message
    Translation {
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli: Cli = isolab::cli::parse();
    let result = match cli.command {
        Cmd::Tour => tour::tour(),
        Cmd::Doctor => doctor::doctor(),
        Cmd::List => learner::list(),
        Cmd::Check { step } => learner::check(step),
        Cmd::Hint { step, level } => learner::hint(step, level.map(usize::from)),
        Cmd::Reset {
            step,
            challenge,
            yes,
        } => learner::reset(step, challenge, yes),
        Cmd::Solve { step, yes } => learner::solve(step, yes),
        Cmd::Run {
            step,
            reference,
            args,
        } => learner::run(step, reference, &args),
        Cmd::Rootfs { dir } => learner::rootfs(&dir),
        Cmd::GuestKernel => guest_kernel(),
        Cmd::Book => maint::build_books(),
        Cmd::Guest { memory, cpus } => guest::guest(memory, cpus),
        Cmd::Dev(Dev::SyncChapters { check }) => maint::sync_chapters(check),
        Cmd::Dev(Dev::CheckBook) => maint::check_book(),
        Cmd::Dev(Dev::CheckDuplicates) => duplicates::check_duplicates(),
        Cmd::Dev(Dev::Translation { check }) => maint::translation(check),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("isolab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo run -- guest-kernel`: fill the guest kernel's cache (as you: apt-get
/// download needs no root).
fn guest_kernel() -> Result<ExitCode> {
    use isolab::vm::linux::kernel;
    let (found, fetched) = kernel::fetch()?;
    let how = if fetched {
        "downloaded"
    } else {
        "already there"
    };
    println!(
        "guest kernel {} {how}: {}",
        found.release,
        found.path.display()
    );
    if std::env::var_os(kernel::ENV).is_some() {
        println!(
            "note: {} is set, so the guest boots that kernel instead",
            kernel::ENV
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A step's number as the learner types it: `1`, `01`.
fn step_number(text: &str) -> std::result::Result<u8, String> {
    text.parse().map_err(|_| {
        let have: Vec<String> = STEPS.iter().map(|s| s.number.to_string()).collect();
        format!("give a step's number: {}", have.join(", "))
    })
}

pub fn step_arg(number: u8) -> Result<&'static Step> {
    steps::find(number).with_context(|| {
        let have: Vec<String> = STEPS.iter().map(|s| s.number.to_string()).collect();
        format!(
            "there is no step {number}: the steps are {}",
            have.join(", ")
        )
    })
}
