//! # Step 01: chroot, a root filesystem of its own
//!
//! Step 00, plus one change in the child before exec: chroot(2) into the rootfs and
//! chdir(2) into it. The probe now sees the rootfs as `/`, and the host canary is
//! hidden by path. But chroot changes only how paths are looked up: a process that
//! may call chroot can climb back out, and the probe's chroot escape still reads
//! the canary. Nothing else is isolated: PIDs, hostname and mounts are the host's.
//!
//! Syscalls: chroot(2), chdir(2), on top of fork/execve/waitpid.
//!
//! ```text
//! $ sudo target/debug/01-chroot --rootfs /tmp/rootfs \
//!       -- /bin/probe --canary /tmp/canary
//! root: bin dev etc lib lib64 proc sys tmp
//! canary by path: hidden (no such file under my root)
//! canary via chroot escape: READABLE (chroot into /etc, climb .., chroot .)
//! ```

// Your copy of step 01. Replace each todo!() with your code, then run
// `cargo run -- check 1`. (Generated from solutions/01-chroot.rs:
// `cargo run -- reset 1` brings this version back.)

use isolab::prelude::*;
use nix::unistd::{chdir, chroot, getpid};

// The finished step this one builds on: step 00's own file, as a module. (The path
// is the same from chapters/, so your copy of this step uses the reference 00.)
#[path = "../solutions/00-process.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod process;

/// Step 01: run a command with the rootfs as its root directory (chroot).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    /// Get one thing wrong on purpose, to see what it is for
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The chapter's "break it" experiment, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// chroot without the chdir: the working directory stays in the host's tree
    Chdir,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("chroot(2)")?;
        let rootfs = args.rootfs.checked()?;
        let command = args.command.in_rootfs(&rootfs)?;
        run(&rootfs, &command, &args.mistakes)
    })
}

// ANCHOR: run
fn run(rootfs: &Path, command: &Command, mistakes: &[Mistake]) -> Result<i32> {
    let runtime = getpid();
    // SAFETY: this program has no other threads, so the child may run any code
    // between fork and exec.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            process::die_with(runtime)?;
            if mistakes.contains(&Mistake::Chdir) {
                chroot(rootfs)
                    .with_context(|| format!("chroot({})", rootfs.display()))?;
            } else {
                enter_rootfs(rootfs)?;
            }
            process::exec(command)
        }),
        ForkResult::Parent { child } => process::wait_for(child),
    }
}
// ANCHOR_END: run

/// Make `rootfs` this process's root directory, and move into it.
pub fn enter_rootfs(rootfs: &Path) -> Result<()> {
    // ANCHOR: enter_rootfs
    // TODO: chroot(2) into `rootfs`, then chdir(2) to "/". chroot changes what "/"
    //       means but not the working directory, which would stay in the host's
    //       tree. Give each error a context naming the call, e.g.
    //       "chroot(/tmp/rootfs)".
    todo!(
        "step 01, `enter_rootfs`: not written yet. Read the TODO above this line \
         in chapters/01-chroot.rs, or run `cargo run -- hint 1`"
    );
    // ANCHOR_END: enter_rootfs
}
