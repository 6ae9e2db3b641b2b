//! Keeping the caller's terminal out of the box (step 05).
//!
//! A terminal is more than a place for bytes: its controlling process group may be
//! sent signals, it may be typed into (TIOCSTI), its modes and line discipline may be
//! changed for good (TCSETS, TIOCSETD), and whoever holds it can read what the
//! person at it types next, passwords included. So the box never gets the caller's
//! terminal. It gets one of two things, and the runtime, outside the box, copies
//! bytes between that and the caller's own descriptors:
//!
//! - **pipes** (the default when any of the caller's fds 0-2 is a terminal): the box
//!   sees plain pipes, as `docker run -i` gives; nothing it does reaches the
//!   terminal but the bytes it writes;
//! - **a pseudo-terminal of its own** (`--tty`, as `docker run -t`): what is written
//!   to the *master* comes out of the *slave* as if typed on a keyboard, and what the
//!   box writes to the slave comes out of the master. The box gets the slave as its
//!   stdin, stdout, stderr and controlling terminal, so a shell there has job
//!   control; the runtime keeps the master, and puts the caller's terminal in raw
//!   mode meanwhile, so that Ctrl-C and friends reach the box's terminal as plain
//!   bytes and the box's line discipline acts on them.
//!
//! ```text
//!  caller's fds 0-2 <-> runtime (the relay) <-> pipes, or master ==== slave <-> the box's fds 0-2
//! ```
//!
//! A box whose output nobody trusts (step 09's VMM, which its guest may have taken
//! over) gets pipes for its output only, through a relay that is [`Relay::untrusted`]:
//! it escapes every character a terminal would act on rather than show (as
//! [`printable`](crate::lines::printable) does, but keeping newlines and tabs), and
//! passes on at most a fixed number of bytes of each stream, reading and counting
//! the rest, so that the box can neither drive the caller's terminal nor fill the
//! caller's disk.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// One direction of the relay: bytes from `from` go to `to` (a raw descriptor of
/// ours: 0, 1 or 2, or an end we own in `keep`).
struct Copy {
    from: OwnedFd,
    to: Destination,
    /// For an untrusted box's output: what is escaped, and how much is passed on.
    guard: Option<Guard>,
}

/// What a relay for an untrusted box does to a stream of its output.
struct Guard {
    /// How many of the box's bytes are passed on at most.
    cap: usize,
    /// How many have been.
    passed: usize,
    /// How many were read past the cap, and dropped.
    dropped: usize,
    /// The start of a character split between two reads, kept for the next.
    partial: Vec<u8>,
}

enum Destination {
    /// One of the caller's descriptors, 1 or 2.
    Caller(RawFd),
    /// An end of ours that the box reads: closed when `from` ends, so the box sees
    /// end-of-file.
    Box(Option<OwnedFd>),
}

/// The box's stdin, stdout and stderr, and the runtime's ends of them.
pub struct Relay {
    /// What becomes the box's fds 0, 1 and 2.
    box_side: [OwnedFd; 3],
    /// From the caller's stdin to the box, if stdin is relayed at all.
    input: Option<Copy>,
    /// From the box to the caller's stdout and stderr.
    outputs: Vec<Copy>,
    /// The pseudo-terminal's master, for window sizes (only with `--tty`).
    master: Option<OwnedFd>,
}

/// Is any of fds 0, 1 and 2 a terminal?
pub fn caller_has_a_terminal() -> bool {
    // SAFETY: isatty takes a descriptor number and touches no memory of ours.
    (0..=2).any(|fd| unsafe { libc::isatty(fd) } == 1)
}

impl Relay {
    /// Pipes for the box: one for each of its fds 0, 1 and 2.
    pub fn pipes() -> Result<Relay> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2(O_CLOEXEC)");
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        Ok(Relay {
            box_side: [stdin_r, stdout_w, stderr_w],
            input: Some(Copy {
                from: dup(std::io::stdin().as_fd())?,
                to: Destination::Box(Some(stdin_w)),
                guard: None,
            }),
            outputs: vec![
                Copy {
                    from: stdout_r,
                    to: Destination::Caller(1),
                    guard: None,
                },
                Copy {
                    from: stderr_r,
                    to: Destination::Caller(2),
                    guard: None,
                },
            ],
            master: None,
        })
    }

    /// A new pseudo-terminal for the box, as big as the caller's terminal when there
    /// is one.
    pub fn pty() -> Result<Relay> {
        let size = window_size(std::io::stdin().as_fd());
        let OpenptyResult { master, slave } =
            openpty(size.as_ref(), None).context("openpty(): open /dev/ptmx and its slave")?;
        Ok(Relay {
            box_side: [dup(slave.as_fd())?, dup(slave.as_fd())?, slave],
            input: Some(Copy {
                from: dup(std::io::stdin().as_fd())?,
                to: Destination::Box(Some(dup(master.as_fd())?)),
                guard: None,
            }),
            outputs: vec![Copy {
                from: dup(master.as_fd())?,
                to: Destination::Caller(1),
                guard: None,
            }],
            master: Some(master),
        })
    }

    /// For a box whose output nobody trusts: nothing of the caller's input is read
    /// for it (its stdin is a pipe that is already at its end, until the box puts
    /// something else there), and each stream of its output is escaped and cut at
    /// `cap` bytes (see the module's header). What was cut is said on stderr, in one
    /// line per stream, when the relay ends.
    pub fn untrusted(mut self, cap: usize) -> Relay {
        self.input = None; // drops our end of the box's stdin
        for copy in &mut self.outputs {
            copy.guard = Some(Guard {
                cap,
                passed: 0,
                dropped: 0,
                partial: Vec::new(),
            });
        }
        self
    }

    /// In the box's first process: its ends become stdin, stdout and stderr. The
    /// runtime's ends, and the originals, are closed with every other inherited
    /// descriptor (step 03's close_inherited_fds).
    pub fn attach(&self) -> Result<()> {
        for (fd, end) in (0..).zip(&self.box_side) {
            // SAFETY: dup2 takes two descriptor numbers; `end` is open, and 0-2 are
            // ours to replace.
            let rc = unsafe { libc::dup2(end.as_raw_fd(), fd) };
            Errno::result(rc).with_context(|| format!("dup2(the box's end, {fd})"))?;
        }
        Ok(())
    }

    /// In the runtime: copy bytes both ways until `child` (the box's init) ends; pass
    /// TERM, INT and HUP on to it, and, with a pseudo-terminal, window-size changes
    /// to the box's terminal. Returns `child`'s status as a shell reports it.
    /// `signals` must be blocked and hold SIGCHLD (and SIGWINCH for a pty).
    pub fn relay(self, child: Pid, signals: &SigSet) -> Result<i32> {
        let Relay {
            box_side,
            mut input,
            mut outputs,
            master,
        } = self;
        // Once the box's copies are gone too, our ends see end-of-file (or EIO).
        drop(box_side);
        let stdin = std::io::stdin();
        let _raw = match &master {
            Some(_) => RawMode::enter(stdin.as_fd())?,
            None => RawMode::none(stdin.as_fd()),
        };
        let signal_fd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
            .context("signalfd(the signals the runtime waits for)")?;
        loop {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                outputs
                    .iter()
                    .map(|c| PollFd::new(c.from.as_fd(), PollFlags::POLLIN)),
            );
            if let Some(copy) = &input {
                fds.push(PollFd::new(copy.from.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                other => other.context("poll(signals, the box's output, stdin)")?,
            };
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let input_ready = ready.get(1 + outputs.len()).copied().unwrap_or(false);
            // Outputs first, so that nothing the box wrote waits behind our input.
            let mut ended = Vec::new();
            for (i, copy) in outputs.iter_mut().enumerate() {
                if ready[1 + i] && !copy.pass_on()? {
                    ended.push(i);
                }
            }
            for i in ended.into_iter().rev() {
                outputs.remove(i).finish()?;
            }
            if input_ready
                && let Some(copy) = &mut input
                && !copy.pass_on()?
            {
                input = None; // drops our end: the box reads end-of-file
            }
            if !ready[0] {
                continue;
            }
            let Some(info) = signal_fd.read_signal().context("read(signalfd)")? else {
                continue;
            };
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => {
                    if let (Some(master), Some(size)) =
                        (&master, window_size(std::io::stdin().as_fd()))
                    {
                        set_window_size(master.as_fd(), &size)?;
                    }
                }
                Ok(Signal::SIGCHLD) => {
                    if let Some(code) = reap(child)? {
                        // What the box wrote just before the end is still in our ends.
                        for mut copy in outputs {
                            while readable_now(copy.from.as_fd()) && copy.pass_on()? {}
                            copy.finish()?;
                        }
                        return Ok(code);
                    }
                }
                Ok(signal) => match kill(child, signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(e).with_context(|| format!("kill({child}, {signal})")),
                },
                Err(_) => {}
            }
        }
    }
}

impl Copy {
    /// Copy what `from` has now. false when `from` has ended (end-of-file, or EIO from
    /// a master whose slave is closed everywhere).
    fn pass_on(&mut self) -> Result<bool> {
        let mut buffer = [0u8; 4096];
        let n = match nix::unistd::read(self.from.as_fd(), &mut buffer) {
            Ok(0) | Err(Errno::EIO) => return Ok(false),
            Err(Errno::EINTR | Errno::EAGAIN) => return Ok(true),
            other => other.context("read(the relay)")?,
        };
        let escaped;
        let bytes = match &mut self.guard {
            Some(guard) => {
                escaped = guard.pass(&buffer[..n]);
                &escaped[..]
            }
            None => &buffer[..n],
        };
        self.write(bytes)
    }

    /// The end of an untrusted box's stream: what was left of a split character,
    /// escaped, and one line on stderr if the cap cut the stream.
    fn finish(mut self) -> Result<()> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        let rest: Vec<u8> = guard.partial.iter().flat_map(|b| escape_byte(*b)).collect();
        self.write(&rest)?;
        if guard.dropped > 0 {
            let stream = match self.to {
                Destination::Caller(1) => "stdout",
                _ => "stderr",
            };
            eprintln!(
                "{}: the box wrote {} bytes to its {stream}; the relay passed on the first \
                 {} and dropped the rest",
                crate::run::program_name(),
                guard.passed + guard.dropped,
                guard.cap
            );
        }
        Ok(())
    }

    /// Write all of `bytes` where this copy goes. false when that side is gone.
    fn write(&self, bytes: &[u8]) -> Result<bool> {
        let to = match &self.to {
            Destination::Caller(fd) => {
                // SAFETY: 1 and 2 stay open for the runtime's whole life.
                unsafe { BorrowedFd::borrow_raw(*fd) }
            }
            Destination::Box(Some(end)) => end.as_fd(),
            Destination::Box(None) => return Ok(false),
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            match nix::unistd::write(to, rest) {
                Ok(written) => rest = &rest[written..],
                Err(Errno::EINTR) => {}
                // The other side is gone (the box closed its stdin, or our caller's
                // pipe): nothing more to pass on in this direction.
                Err(Errno::EPIPE | Errno::EIO) => return Ok(false),
                Err(e) => return Err(e).context("write(the relay)"),
            }
        }
        Ok(true)
    }
}

impl Guard {
    /// What to write of `bytes`, the next the box wrote: up to the cap, escaped.
    fn pass(&mut self, bytes: &[u8]) -> Vec<u8> {
        let take = bytes.len().min(self.cap - self.passed);
        self.passed += take;
        self.dropped += bytes.len() - take;
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(&bytes[..take]);
        let mut out = Vec::with_capacity(data.len());
        let mut rest = &data[..];
        loop {
            let (text, after) = match std::str::from_utf8(rest) {
                Ok(text) => (text, None),
                Err(e) => {
                    let (valid, invalid) = rest.split_at(e.valid_up_to());
                    // from_utf8 has just said that these bytes are valid.
                    let text = std::str::from_utf8(valid).unwrap_or_default();
                    (text, Some((invalid, e.error_len())))
                }
            };
            for c in text.chars() {
                if crate::lines::acts_on_display(c) && c != '\n' && c != '\t' {
                    out.extend(c.escape_default().to_string().bytes());
                } else {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
            match after {
                None => break,
                // Bytes that are no character: escaped one by one.
                Some((invalid, Some(len))) => {
                    out.extend(invalid[..len].iter().flat_map(|b| escape_byte(*b)));
                    rest = &invalid[len..];
                }
                // The start of a character whose end has not been read yet.
                Some((invalid, None)) => {
                    self.partial = invalid.to_vec();
                    break;
                }
            }
        }
        out
    }
}

/// A byte that is not part of a character, as `\x9b`.
fn escape_byte(byte: u8) -> Vec<u8> {
    format!("\\x{byte:02x}").into_bytes()
}

fn dup(fd: BorrowedFd) -> Result<OwnedFd> {
    fd.try_clone_to_owned().context("fcntl(F_DUPFD_CLOEXEC)")
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
    fn none(fd: BorrowedFd<'a>) -> RawMode<'a> {
        RawMode { fd, saved: None }
    }

    fn enter(fd: BorrowedFd<'a>) -> Result<RawMode<'a>> {
        let Ok(saved) = tcgetattr(fd) else {
            return Ok(RawMode::none(fd)); // not a terminal: nothing to do
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

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(cap: usize) -> Guard {
        Guard {
            cap,
            passed: 0,
            dropped: 0,
            partial: Vec::new(),
        }
    }

    /// What a terminal would act on arrives escaped, whichever way it is written:
    /// ESC, a C1 CSI as a character or as a lone byte, a right-to-left override.
    /// Lines, tabs and ordinary text arrive as they are.
    #[test]
    fn an_untrusted_stream_reaches_the_terminal_escaped() {
        let mut g = guard(1 << 20);
        let out = g.pass("a\x1b]0;title\x07\tb\u{9b}2J\u{202e}c, é\n".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\u{1b}]0;title\\u{7}\tb\\u{9b}2J\\u{202e}c, é\n"
        );
        assert_eq!(g.pass(b"\x9b6n\xff\r"), b"\\x9b6n\\xff\\r");
    }

    /// A character split between two reads is put together, not escaped as bytes.
    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let mut g = guard(1 << 20);
        let bytes = "é\u{202e}".as_bytes();
        assert_eq!(g.pass(&bytes[..1]), b"");
        assert_eq!(g.pass(&bytes[1..3]), "é".as_bytes());
        assert_eq!(g.pass(&bytes[3..]), b"\\u{202e}");
        assert!(g.partial.is_empty());
    }

    /// Past the cap, bytes are counted and dropped.
    #[test]
    fn an_untrusted_stream_is_cut_at_its_cap() {
        let mut g = guard(10);
        assert_eq!(g.pass(b"0123456"), b"0123456");
        assert_eq!(g.pass(b"789abcdef"), b"789");
        assert_eq!(g.pass(b"more"), b"");
        assert_eq!((g.passed, g.dropped), (10, 10));
    }
}
