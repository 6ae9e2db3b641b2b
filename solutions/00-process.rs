//! # Step 00: a plain process
//!
//! The baseline every later step is measured against. The runtime forks; the child
//! becomes the command with execve(2); the parent waits and passes the command's
//! exit status on, as a shell does (128 + N when signal N killed it). Nothing is
//! isolated: the probe sees the host's root, processes, mounts and hostname, and
//! reads the host canary by every route it tries.
//!
//! Syscalls: fork(2), execve(2), waitpid(2), prctl(2) with PR_SET_PDEATHSIG.
//!
//! The functions marked `pub` are finished code the later steps call: step 01 takes
//! this file as its module `process`, and so on up the ladder.
//!
//! ```text
//! $ target/debug/00-process -- target/debug/probe --canary /tmp/canary
//! pid: 48213
//! ...
//! canary by path: READABLE
//! ```

use isolab::prelude::*;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{execv, getpid, getppid};

/// Step 00: run a command as a plain child process, with no isolation at all.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Get one thing wrong on purpose, to see what it is for (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// report 0, whatever the command's status was
    Status,
    /// leave out die_with: the command may outlive a killed runtime
    Pdeathsig,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        let command = args.command.on_host()?;
        run(&command, &args.mistakes)
    })
}

// ANCHOR: run
fn run(command: &Command, mistakes: &[Mistake]) -> Result<i32> {
    let runtime = getpid();
    // SAFETY: this program has no other threads, so the child may run any code
    // between fork and exec.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            if !mistakes.contains(&Mistake::Pdeathsig) {
                die_with(runtime)?;
            }
            exec(command)
        }),
        ForkResult::Parent { child } => {
            let code = wait_for(child)?;
            Ok(if mistakes.contains(&Mistake::Status) {
                0
            } else {
                code
            })
        }
    }
}
// ANCHOR_END: run

/// Ask the kernel to SIGKILL us when the runtime dies, so that a runtime killed
/// halfway never leaves the command running on its own.
pub fn die_with(runtime: Pid) -> Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL)
        .context("prctl(PR_SET_PDEATHSIG, SIGKILL)")?;
    // The runtime may have died before the prctl: then we have a new parent
    // already.
    if getppid() != runtime {
        bail!("the runtime exited before the command started");
    }
    Ok(())
}

/// Become the command. execv only returns when it fails.
pub fn exec(command: &Command) -> Result<Infallible> {
    //>1 Become the command: this process turns into the program the user named, and
    //>1 keeps its PID. Done when `cargo run -- run 0 -- /bin/echo hello` prints
    //>1 hello.
    //>2 execv(2), with the command's path and its argv; it returns only on failure.
    //> Replace this program with the command: execv(2) with command.path and
    //> command.argv. It returns only on failure: return that error, with a context
    //> that names the call and the path, e.g. "execv(/bin/probe)".
    // ANCHOR: exec
    execv(&command.path, &command.argv)
        .with_context(|| format!("execv({})", command.path.to_string_lossy()))
    // ANCHOR_END: exec
}

/// Wait for the child and return its exit status as a shell reports it.
pub fn wait_for(child: Pid) -> Result<i32> {
    //>1 Wait until the child has ended and report how, as a shell does: its exit
    //>1 code, or 128 + the signal that killed it. `check 0` tries 7, 143, 137 and
    //>1 130.
    //>2 waitpid(2), in a loop: its WaitStatus says Exited or Signaled once the
    //>2 child has ended, and something else while it lives.
    //> Call waitpid(2) on `child` until it has ended. WaitStatus::Exited(_, code)
    //> gives `code`; WaitStatus::Signaled(_, signal, _) gives 128 + the signal's
    //> number (`signal as i32`). Any other status means it is still alive: wait again.
    // ANCHOR: wait
    loop {
        match waitpid(child, None).context("waitpid(child)")? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::Signaled(_, signal, _) => return Ok(128 + signal as i32),
            _ => continue,
        }
    }
    // ANCHOR_END: wait
}
