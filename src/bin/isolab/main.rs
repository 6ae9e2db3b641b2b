//! `isolab`: the workshop's command line. Tour the finished steps, see where you
//! are, check your own steps, get a hint, catch up, and see what this machine can do.
//!
//! Building always happens as you; only running a step that needs root goes through
//! sudo, so no file in your checkout ever becomes root's.

mod doctor;
mod learner;
mod maint;
mod tour;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use isolab::steps::{self, Needs, STEPS, Step};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

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
    /// What to write in step N, and a nudge
    Hint {
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
    },
    /// Put the untouched skeleton of step N back (your version is kept as a backup)
    Reset {
        /// The step's number
        #[arg(value_parser = step_number)]
        step: u8,
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
    /// exist, and that every link between pages and to images resolves
    CheckBook,
}

fn main() -> ExitCode {
    let cli: Cli = isolab::cli::parse();
    let result = match cli.command {
        Cmd::Tour => tour::tour(),
        Cmd::Doctor => doctor::doctor(),
        Cmd::List => learner::list(),
        Cmd::Check { step } => learner::check(step),
        Cmd::Hint { step } => learner::hint(step),
        Cmd::Reset { step, yes } => learner::reset(step, yes),
        Cmd::Solve { step, yes } => learner::solve(step, yes),
        Cmd::Run { step, args } => learner::run(step, &args),
        Cmd::Rootfs { dir } => learner::rootfs(&dir),
        Cmd::GuestKernel => guest_kernel(),
        Cmd::Dev(Dev::SyncChapters { check }) => maint::sync_chapters(check),
        Cmd::Dev(Dev::CheckBook) => maint::check_book(),
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

/// The checkout this binary was built from.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this binary, and so the step binaries and the probe.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    Ok(exe
        .parent()
        .context("this program's directory")?
        .to_path_buf())
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

/// cargo, to build in this checkout as the user who owns it. Building as root in
/// someone else's checkout would leave files in target/ they cannot remove, so
/// that is refused with what to do instead.
pub fn cargo() -> Result<Command> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(repo()).map(|m| m.uid()).unwrap_or(0);
    if is_root() && owner != 0 {
        bail!(
            "not building as root in a checkout that belongs to user {owner} (target/ would get root's files): \
             run isolab as yourself, e.g. `cargo run -- tour`; it asks for sudo only to run the steps"
        );
    }
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("cargo"))
            .find(|p| p.is_file())
    });
    let Some(cargo) = cargo else {
        bail!(
            "cargo is not on PATH (sudo resets PATH): run isolab as yourself, e.g. `cargo run -- tour`; \
             it asks for sudo only to run the steps"
        );
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo());
    Ok(cmd)
}

/// Build the reference binaries and the probe if any is missing or stale.
pub fn build_references() -> Result<()> {
    let status = cargo()?
        .args(["build", "--quiet", "--package", "isolab", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bins failed (see above)");
    }
    Ok(())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Can this user use /dev/kvm as they are?
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Does running something that needs `needs` take sudo, for this user?
pub fn needs_sudo(needs: Needs) -> bool {
    match needs {
        Needs::Nothing => false,
        Needs::Root => !is_root(),
        Needs::Kvm => !is_root() && !kvm_usable(),
        Needs::RootAndKvm => !is_root(),
    }
}

/// The command that runs `program` with root's powers: the program itself when we
/// are root, or `sudo` in front of it. Environment variables go through `env`, which
/// sudo's default policy keeps (unlike `--preserve-env`).
pub fn as_root(program: &std::path::Path, env: &[(&str, String)]) -> Result<Command> {
    if is_root() {
        let mut cmd = Command::new(program);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        return Ok(cmd);
    }
    let sudo = ["/usr/bin/sudo", "/bin/sudo"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(sudo) = sudo else {
        bail!(
            "this needs root and sudo is not installed: run it as root, e.g. `su -c '{} ...'`",
            program.display()
        );
    };
    let mut cmd = Command::new(sudo);
    cmd.arg("env");
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(program);
    Ok(cmd)
}

/// Set when isolab runs itself again through sudo, after building as the user:
/// the root run must not build, or target/ would get files owned by root.
pub const PREBUILT: &str = "ISOLAB_PREBUILT";

pub fn prebuilt() -> bool {
    std::env::var_os(PREBUILT).is_some()
}

/// Run this very command line again through sudo, telling it the binaries are
/// built. Its exit code is passed on.
pub fn rerun_with_sudo() -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    eprintln!("isolab: this needs root: running it again with sudo (it may ask for your password)");
    let status = as_root(&exe, &[(PREBUILT, "1".into())])?
        .args(std::env::args_os().skip(1))
        .status()
        .context("running sudo")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// Colour for a terminal, plain text for a pipe.
pub fn paint(text: &str, colour: &str) -> String {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        let code = match colour {
            "green" => "32",
            "red" => "31",
            "yellow" => "33",
            _ => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
