//! # The probe
//!
//! The instrument every container step runs inside its box. `probe report` prints,
//! one `key: value` line each and always in the same order, what the process can see
//! and do: who it is, what it sees, whether it can reach the host canary (by path,
//! through a chroot escape, through `/proc/*/root`, through an inherited descriptor,
//! through a keyring, by a key's serial number), what it may spend, and what it may
//! ask of the kernel. It never does a dangerous
//! thing for real: each forbidden action is asked in a way the kernel refuses *after*
//! its permission check, so EPERM means "blocked" and anything else means "allowed".
//!
//! The other subcommands are small demonstrations the tests and the book use:
//! exit with a code, die by a signal, leave an orphan, wait for a signal, and (bounded)
//! memory, fork and CPU hogs. And a timer for step 10: the cost of a system call.

mod demos;
mod host;
mod limits;
mod privileges;
mod report;
mod routes;
mod timing;
mod view;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The isolab probe: reports what a process can see and do from where it runs.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    what: Option<What>,
    /// The host canary to look for (`report` only; the tour and the tests make one)
    #[arg(long, global = true, value_name = "PATH")]
    canary: Option<PathBuf>,
    /// The serial number of a key of the caller's, in a keyring no box holds, to try
    /// to read (`report` only; the tour and the tests start `hold-key` for one)
    #[arg(long, global = true, value_name = "SERIAL")]
    key_serial: Option<i32>,
}

#[derive(Subcommand)]
enum What {
    /// Print the report (what runs when no subcommand is given)
    Report,
    /// Print the effective user ID (the report runs a setuid copy of itself with this)
    #[command(hide = true)]
    Euid,
    /// Exit with this code
    Exit { code: u8 },
    /// Kill itself with this signal (a number, or a name like TERM)
    KillSelf { signal: String },
    /// Leave an orphan that exits, then report whether someone reaped it
    Orphan,
    /// Print `ready`, then wait for SIGTERM; with --exit-code, catch it and exit with that code
    WaitSignal {
        #[arg(long)]
        exit_code: Option<u8>,
    },
    /// Allocate and touch memory, 1 MiB at a time, until killed or --max is reached
    MemoryHog {
        #[arg(long, default_value = "512m", value_parser = isolab::cli::parse_size)]
        max: u64,
    },
    /// Fork children that wait, until refused or --max is reached
    ForkBomb {
        #[arg(long, default_value_t = 200)]
        max: u32,
    },
    /// Spin on the CPU for --millis of wall time, on --threads threads, and report
    /// the CPU share it got
    Spin {
        #[arg(long, default_value_t = 500)]
        millis: u64,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
    },
    /// Mount the box's cgroup filesystems again, read-write, and lift its own memory,
    /// pids and CPU limits; then run COMMAND, if one is given after `--`
    RaiseLimits {
        #[arg(last = true, value_name = "COMMAND")]
        then: Vec<std::ffi::OsString>,
    },
    /// Copy the probe to PATH as a setuid file (mode 4755) and leave it there
    PlantSetuid { path: PathBuf },
    /// Open PATH for reading and writing, and say whether the kernel let us
    #[command(hide = true)]
    Open { path: PathBuf },
    /// Shed every supplementary group, as `su` does, then open PATH for reading
    #[command(hide = true)]
    DropGroups { path: PathBuf },
    /// Hold the canary key in a session keyring of its own, readable by its user;
    /// print its serial, and hold it until stdin closes
    #[command(hide = true)]
    HoldKey,
    /// Key an AF_ALG hash with the key whose serial --key-serial gives, and say
    /// whether the kernel let us
    #[command(hide = true)]
    AlgKey,
    /// Time --count getppid() system calls and print the cost of one
    Syscalls {
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
    },
}

fn main() -> ExitCode {
    // A reader that stops early (`probe | head`) ends the probe quietly, as it does
    // any other program, instead of a panic on the failed write: Rust ignores
    // SIGPIPE unless told otherwise.
    // SAFETY: setting a signal's disposition to its default runs no code of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = Args::parse();
    match args.what.unwrap_or(What::Report) {
        What::Report => report::print(args.canary.as_deref(), args.key_serial),
        What::Euid => {
            println!("{}", nix::unistd::geteuid());
            ExitCode::SUCCESS
        }
        What::Exit { code } => ExitCode::from(code),
        What::KillSelf { signal } => demos::kill_self(&signal),
        What::Orphan => demos::orphan(),
        What::WaitSignal { exit_code } => demos::wait_signal(exit_code),
        What::MemoryHog { max } => demos::memory_hog(max),
        What::ForkBomb { max } => demos::fork_bomb(max),
        What::Spin { millis, threads } => demos::spin(millis, threads),
        What::RaiseLimits { then } => limits::raise(&then),
        What::PlantSetuid { path } => host::plant_setuid_copy(&path),
        What::Open { path } => host::open_for_writing(&path),
        What::DropGroups { path } => host::drop_groups_and_read(&path),
        What::HoldKey => demos::hold_key(),
        What::AlgKey => privileges::alg_key(args.key_serial),
        What::Syscalls { count } => timing::syscalls(count),
    }
}
