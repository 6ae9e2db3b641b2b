//! A pseudo-terminal of the box's own, for `--tty` (step 05), as `docker run -t`
//! gives one.
//!
//! A pseudo-terminal is a pair of descriptors: what is written to the *master* comes
//! out of the *slave* as if typed on a keyboard, and what programs write to the slave
//! comes out of the master. The box gets the slave as its stdin, stdout and stderr,
//! and as its controlling terminal, so a shell in it has job control. The runtime
//! keeps the master, outside the box, and relays between it and the caller's own
//! terminal, which it puts in raw mode meanwhile (so that Ctrl-C and friends go to
//! the box's terminal as plain bytes, and the box's line discipline acts on them).
//! A TIOCSTI in the box can then only type into the box's own terminal.
//!
//! ```text
//!  caller's terminal <-> runtime (relay) <-> master ==== slave <-> the box (fds 0, 1, 2)
//! ```

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The two ends of a new pseudo-terminal.
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// A new pseudo-terminal, as big as the caller's terminal when there is one.
    pub fn open() -> Result<Pty> {
        let size = window_size(std::io::stdin().as_fd());
        let OpenptyResult { master, slave } =
            openpty(size.as_ref(), None).context("openpty(): open /dev/ptmx and its slave")?;
        Ok(Pty { master, slave })
    }

    /// In the box's first process: the slave becomes stdin, stdout and stderr. The
    /// original descriptors are closed with every other inherited one (step 03).
    pub fn attach(&self) -> Result<()> {
        for fd in 0..=2 {
            // SAFETY: dup2 takes two descriptor numbers; the slave is open, and 0-2 are
            // ours to replace.
            let rc = unsafe { libc::dup2(self.slave.as_raw_fd(), fd) };
            Errno::result(rc).with_context(|| format!("dup2(pty slave, {fd})"))?;
        }
        Ok(())
    }

    /// In the runtime: copy the caller's keystrokes to the box and the box's output
    /// to the caller until `child` (the box's init) ends; pass TERM, INT and HUP on to
    /// it, and window-size changes to the box's terminal. Returns `child`'s status as
    /// a shell reports it. `signals` must be blocked, and hold SIGCHLD and SIGWINCH.
    pub fn relay(self, child: Pid, signals: &SigSet) -> Result<i32> {
        let Pty { master, slave } = self;
        // Once the box's copies are gone too, reading the master says EIO.
        drop(slave);
        let stdin = std::io::stdin();
        let _raw = RawMode::enter(stdin.as_fd())?;
        let signal_fd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
            .context("signalfd(TERM, INT, HUP, CHLD, WINCH)")?;
        let mut stdin_open = true;
        let mut master_open = true;
        loop {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            let mut fds = vec![
                PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(master.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                other => other.context("poll(signals, pty master, stdin)")?,
            };
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty())
            };
            let (signal_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
            drop(fds);
            if master_ready && master_open {
                master_open = copy(master.as_fd(), std::io::stdout().as_fd())?;
            }
            if stdin_ready && stdin_open {
                stdin_open = copy(stdin.as_fd(), master.as_fd())?;
            }
            if signal_ready {
                let Some(info) = signal_fd.read_signal().context("read(signalfd)")? else {
                    continue;
                };
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => {
                        if let Some(size) = window_size(stdin.as_fd()) {
                            set_window_size(master.as_fd(), &size)?;
                        }
                    }
                    Ok(Signal::SIGCHLD) => {
                        if let Some(code) = reap(child)? {
                            // What the box wrote just before the end is still in the master.
                            while master_open && readable_now(master.as_fd()) {
                                master_open = copy(master.as_fd(), std::io::stdout().as_fd())?;
                            }
                            return Ok(code);
                        }
                    }
                    Ok(signal) => match kill(child, signal) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("kill({child}, {signal})"));
                        }
                    },
                    Err(_) => {}
                }
            }
        }
    }
}

/// Copy what `from` has now to `to`. false when `from` has ended (EOF, or EIO from a
/// master whose slave is closed everywhere).
fn copy(from: BorrowedFd, to: BorrowedFd) -> Result<bool> {
    let mut buffer = [0u8; 4096];
    let n = match nix::unistd::read(from, &mut buffer) {
        Ok(0) | Err(Errno::EIO) => return Ok(false),
        Err(Errno::EINTR | Errno::EAGAIN) => return Ok(true),
        other => other.context("read(terminal)")?,
    };
    let mut rest = &buffer[..n];
    while !rest.is_empty() {
        match nix::unistd::write(to, rest) {
            Ok(written) => rest = &rest[written..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("write(terminal)"),
        }
    }
    Ok(true)
}

fn readable_now(fd: BorrowedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

/// The status of `child` if it has ended, reaping any other child on the way.
fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                return Ok(Some(128 + signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(e) => return Err(e).context("waitpid(-1, WNOHANG)"),
        }
    }
}

fn window_size(fd: BorrowedFd) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize into `size`; on a descriptor that
    // is not a terminal it fails with ENOTTY and writes nothing.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0).then_some(size)
}

fn set_window_size(fd: BorrowedFd, size: &Winsize) -> Result<()> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from `size`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size) };
    Errno::result(rc).context("ioctl(pty master, TIOCSWINSZ)")?;
    Ok(())
}

/// The caller's terminal in raw mode for as long as this lives: keys go to the box
/// one by one, unechoed and uninterpreted. Put back however the relay ends (short of
/// SIGKILL; then `reset` or `stty sane` mends the terminal).
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Option<Termios>,
}

impl<'a> RawMode<'a> {
    fn enter(fd: BorrowedFd<'a>) -> Result<RawMode<'a>> {
        let Ok(saved) = tcgetattr(fd) else {
            return Ok(RawMode { fd, saved: None }); // not a terminal: nothing to do
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).context("tcsetattr(stdin, raw)")?;
        Ok(RawMode {
            fd,
            saved: Some(saved),
        })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(self.fd, SetArg::TCSADRAIN, saved);
        }
    }
}
