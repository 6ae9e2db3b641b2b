//! Running a step: its `main`, the child's half of a fork, and the resolved command.

use anyhow::{Context, Result};
use nix::errno::Errno;
use std::convert::Infallible;
use std::ffi::CString;
use std::process::ExitCode;

/// A command ready for execve(2): its path as the process that runs it will see it
/// (inside the box, once there is one) and its argument vector.
#[derive(Debug, Clone)]
pub struct Command {
    pub path: CString,
    pub argv: Vec<CString>,
}

/// The name this program was started as, for error messages: `01-chroot: error: ...`.
pub fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "isolab".into())
}

/// Every step's `main`: runs the step and exits with the code it returns (the
/// command's own exit code, passed on). An error becomes one line on stderr and exit
/// code 125, the code `docker run` uses when the runtime itself fails.
///
/// A reader that goes away early (`... | head`) makes `println!` panic, since Rust
/// ignores SIGPIPE. That ends the step quietly with 141, what a shell shows for a
/// program SIGPIPE killed, after the unwinding has run every drop: a runtime still
/// removes its cgroups, which the signal's default action would not let it do.
pub fn main(step: impl FnOnce() -> Result<i32>) -> ExitCode {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !stdout_closed(info.payload_as_str()) {
            report(info);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(Ok(code)) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Ok(Err(err)) => {
            eprintln!("{}: error: {err:#}", program_name());
            ExitCode::from(125)
        }
        Err(panic) if stdout_closed(panic.downcast_ref::<String>().map(String::as_str)) => {
            ExitCode::from(141)
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Is this panic's message std's "failed printing to stdout: Broken pipe"?
fn stdout_closed(message: Option<&str>) -> bool {
    message
        .is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("(os error 32)"))
}

/// The child's half of a fork. The closure ends in execve(2), so it returns only with
/// an error; that error is printed as one line and the child exits at once with
/// `_exit`, never returning into the parent's code. The exit code follows the shell:
/// 127 when the command is not there, 126 when it cannot be run, 125 otherwise.
///
/// A panic (a skeleton's `todo!()`) ends the child too, with the code a panic gives,
/// 101, once the panic's message is out. Left to unwind, it would run the drops of
/// the parent's frames in the child's copy of them: a runtime's cgroups removed from
/// inside the box, which the kernel refuses (EBUSY), with a warning.
pub fn in_child(child: impl FnOnce() -> Result<Infallible>) -> ! {
    let err = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
        Ok(Ok(never)) => match never {},
        Ok(Err(err)) => err,
        // SAFETY: as below; the panic hook has printed the message already.
        Err(_) => unsafe { libc::_exit(101) },
    };
    eprintln!("{}: error: {err:#}", program_name());
    let code = match err.root_cause().downcast_ref::<Errno>() {
        Some(Errno::ENOENT) => 127,
        Some(Errno::EACCES | Errno::ENOEXEC) => 126,
        _ => 125,
    };
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // flushing buffers it copied at fork; it takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Fail with one line, before anything is forked, when we are not root.
pub fn need_root(for_what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("{for_what} needs root: run this step with sudo (or as root)");
    }
    Ok(())
}

/// Start `command` with exactly stdin, stdout and stderr, plus, with `leak` set, one
/// extra descriptor, fd 3, open on the directory `leak` without close-on-exec: what a
/// careless caller (or a runtime bug) passes into a box. The tour and the tests use
/// it to show the leaked-descriptor route to the host, and so that whatever the
/// caller's own shell left open does not show up in the report.
pub fn std_fds_only(
    command: &mut std::process::Command,
    leak: Option<&std::path::Path>,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = leak
        .map(|d| std::fs::File::open(d).with_context(|| format!("open({})", d.display())))
        .transpose()?;
    // SAFETY: between fork and exec the closure only calls dup2, fcntl and
    // close_range, which are async-signal-safe; `dir` lives in the closure, which
    // the Command owns until the spawn is done.
    unsafe {
        command.pre_exec(move || {
            let mut first_closed = 3;
            if let Some(dir) = &dir {
                // dup2 onto itself keeps close-on-exec, so clear the flag explicitly.
                if libc::dup2(dir.as_raw_fd(), 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                first_closed = 4;
            }
            if libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// A pipe whose ends close on exec: (read end, write end).
pub fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2(O_CLOEXEC)")
}

/// A pipe that tells a freshly forked child whether its parent is still alive.
///
/// PR_SET_PDEATHSIG makes the kernel kill the child when its parent dies, but only
/// from the moment the child asks; if the parent died just before, the child must
/// notice by itself. Step 00 compares getppid() with the parent's PID. Across a PID
/// namespace that does not work (getppid() is 0 when the parent lives outside our
/// namespace), so the later steps use this pipe: the parent holds the write end for
/// its whole life, and the child sees end-of-file once the parent is gone.
pub struct Lifeline {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Lifeline {
    /// Make the pipe; call before fork and keep it alive in the parent.
    pub fn new() -> Result<Lifeline> {
        let (read, write) = pipe()?;
        Ok(Lifeline { read, write })
    }

    /// In the child: have the kernel SIGKILL us when the parent dies, and fail if it
    /// has died already.
    pub fn die_with_parent(self) -> Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        drop(self.write);
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("prctl(PR_SET_PDEATHSIG, SIGKILL)")?;
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.read),
            PollFlags::POLLIN,
        )];
        let ready = poll(&mut fds, PollTimeout::ZERO).context("poll(lifeline)")?;
        if ready > 0 {
            anyhow::bail!("the runtime exited before the box started");
        }
        Ok(())
    }
}
