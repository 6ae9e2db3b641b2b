//! # Step 02: namespaces, and a real PID 1
//!
//! Step 01, plus namespaces: the box gets its own hostname (UTS), its own PID
//! numbers (PID) and its own System V IPC objects (IPC). The first process in a new
//! PID namespace is its PID 1, and PID 1 has duties: it must reap every child that
//! ends under it, orphans included, and pass signals on, because the kernel
//! delivers to PID 1 only the signals it has asked for. So the box runs a small
//! init of ours as PID 1, and the command as its child, PID 2.
//!
//! The box also gets the host's `/proc`, as chroot recipes do. `/proc` shows the
//! PID namespace of whoever mounted it, so the probe, PID 2 in its own namespace,
//! still lists every host process there. Step 03 mounts a `/proc` of its own.
//!
//! Syscalls: unshare(2) with CLONE_NEWPID, CLONE_NEWUTS, CLONE_NEWIPC and
//! CLONE_NEWNS; sethostname(2); sigprocmask(2) and sigwait(3); waitpid(2) with
//! WNOHANG; kill(2); mount(2) for the /proc bind.
//!
//! ```text
//! $ sudo target/debug/02-namespaces --rootfs /tmp/rootfs -- /bin/probe
//! pid: 2
//! ppid: 1
//! hostname: isolab
//! processes: 97 (too many to list: the host's processes)
//! ```

use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::sethostname;

// The finished steps this one builds on: step 01's own file, and through it 00's.
#[path = "../solutions/01-chroot.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod chroot;
pub use chroot::process;

/// Step 02: run a command in new UTS, PID and IPC namespaces, under a real init.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    #[command(flatten)]
    hostname: HostnameArg,
    /// Get one thing wrong on purpose, to see what it is for (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// init waits for the command only, and reaps no orphan
    Reaping,
    /// no init: the command itself is PID 1
    Init,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("unshare(2) of new namespaces")?;
        isolab::container::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::container::rootfs::need_mount_points(&rootfs, &["proc"])?;
        let command = args.command.in_rootfs(&rootfs)?;
        run(&rootfs, &args.hostname.hostname, &command, &args.mistakes)
    })
}

/// The signals our processes wait for instead of letting them act: the three an
/// init passes on to the command, and SIGCHLD, which says a child has ended.
pub fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

// ANCHOR: run
fn run(
    rootfs: &Path,
    hostname: &str,
    command: &Command,
    mistakes: &[Mistake],
) -> Result<i32> {
    // Blocked signals wait in a queue until sigwait takes them; blocking them
    // before the fork means none can slip through in between. The mask is
    // inherited.
    let signals = waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let lifeline = Lifeline::new()?;
    new_pid_namespace()?;
    // SAFETY: this program has no other threads, so the child may run any code.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            // When init dies, the kernel kills every process in its PID namespace:
            // so with init tied to the runtime, nothing outlives the runtime.
            lifeline.die_with_parent()?;
            init(rootfs, hostname, command, &signals, mistakes)
        }),
        ForkResult::Parent { child } => supervise(child, &signals),
    }
}
// ANCHOR_END: run

/// A process cannot change its own PID, so CLONE_NEWPID does not move the caller:
/// it puts the caller's *next child* into a new PID namespace, as its PID 1.
fn new_pid_namespace() -> Result<()> {
    //>1 Make the next process this one forks PID 1 of a new PID namespace. The
    //>1 report then says `pid: 2` and `ppid: 1`.
    //>2 unshare(2), with the flag for a new PID namespace.
    //> unshare(2) with CloneFlags::CLONE_NEWPID. Our next child (the fork right after
    //> this) becomes PID 1 of the new namespace. Context: "unshare(CLONE_NEWPID)".
    // ANCHOR: new_pid_namespace
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")
    // ANCHOR_END: new_pid_namespace
}

/// PID 1 of the box: its own namespaces and root, then the command as its child,
/// supervised until it ends. Never returns: exits with the command's status.
fn init(
    rootfs: &Path,
    hostname: &str,
    command: &Command,
    signals: &SigSet,
    mistakes: &[Mistake],
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    let namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS;
    enter_namespaces(namespaces, hostname)?;
    mount_host_proc(rootfs)?;
    chroot::enter_rootfs(rootfs)?;
    if mistakes.contains(&Mistake::Init) {
        // The command becomes PID 1 itself, with the signals it never asked for.
        signals
            .thread_unblock()
            .context("sigprocmask(SIG_UNBLOCK)")?;
        process::exec(command)?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            // The signal mask survives exec: give the command a clean one.
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            process::exec(command)
        }),
        ForkResult::Parent { child } => {
            let code = if mistakes.contains(&Mistake::Reaping) {
                process::wait_for(child)? // for the command only: orphans stay zombies
            } else {
                supervise(child, signals)?
            };
            std::process::exit(code)
        }
    }
}

/// New namespaces of the kinds in `namespaces` for this process (init), and our
/// hostname. Here: UTS, IPC and mount; later steps add kinds.
pub fn enter_namespaces(namespaces: CloneFlags, hostname: &str) -> Result<()> {
    //>1 Give init the new namespaces in `namespaces` (UTS, IPC, mount), and the box
    //>1 its own hostname. The report's `hostname:` says the box's name; the host
    //>1 keeps its own.
    //>2 unshare(2) with `namespaces`, then sethostname(2).
    //> unshare(2) with `namespaces` (a CloneFlags: here CLONE_NEWUTS | CLONE_NEWIPC |
    //> CLONE_NEWNS), then sethostname(2) to `hostname`: the new name is seen only
    //> inside the new UTS namespace. Name each call in its error context, e.g.
    //> format!("unshare({namespaces:?})").
    // ANCHOR: enter_namespaces
    unshare(namespaces).with_context(|| format!("unshare({namespaces:?})"))?;
    sethostname(hostname).with_context(|| format!("sethostname({hostname})"))?;
    Ok(())
    // ANCHOR_END: enter_namespaces
}

/// Give the box the host's /proc, as chroot recipes do. The bind mount is made in
/// the box's own mount namespace, marked private first so that it never propagates
/// to the host, and it vanishes with the box (step 03 explains both).
fn mount_host_proc(rootfs: &Path) -> Result<()> {
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .context("mount(/, MS_REC | MS_PRIVATE)")?;
    let target = rootfs.join("proc");
    mount(
        Some("/proc"),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .with_context(|| {
        format!("mount(/proc, {}, MS_BIND | MS_REC)", target.display())
    })
}

/// Wait for `child`, passing forwarded signals on to it and reaping every child
/// that ends here, orphans included. Returns `child`'s status as a shell reports
/// it. The runtime uses it to supervise init; init uses it to supervise the
/// command.
pub fn supervise(child: Pid, signals: &SigSet) -> Result<i32> {
    //>1 Be a good init: pass SIGTERM, SIGINT and SIGHUP on to `child`, reap every
    //>1 child that ends (orphans too), and return `child`'s exit code once it ends.
    //>1 `probe orphan` must say `orphan reaped: yes`, and SIGTERM to the runtime
    //>1 must end the box with 143.
    //>2 sigwait(3) in a loop (`signals.wait()`); kill(2) to pass a signal on;
    //>2 waitpid(2) with WNOHANG for any child, until none is left to reap.
    //> Loop: take the next signal with signals.wait() (sigwait). For SIGTERM, SIGINT
    //> or SIGHUP, kill(child, signal) to pass it on (ignore ESRCH: the child may be
    //> gone). For SIGCHLD, reap with waitpid(None, Some(WaitPidFlag::WNOHANG)) until
    //> it says StillAlive or ECHILD: one SIGCHLD can stand for many children. When
    //> the one that ended is `child`, return its code, or 128 + signal if killed.
    // ANCHOR: supervise
    loop {
        let signal = signals.wait().context("sigwait()")?;
        if signal != Signal::SIGCHLD {
            match kill(child, signal) {
                Ok(()) | Err(Errno::ESRCH) => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("kill({child}, {signal})"));
                }
            }
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    return Ok(code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    return Ok(128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // An orphan (or another child): reaped, no zombie left.
                Ok(_) => continue,
                Err(e) => return Err(e).context("waitpid(-1, WNOHANG)"),
            }
        }
    }
    // ANCHOR_END: supervise
}
