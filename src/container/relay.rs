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
//!   terminal but the bytes it writes, and those as text (below);
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
//! Bytes can drive a terminal too: it acts on the escape sequences in what it shows.
//! One sets the clipboard (OSC 52), one the window's title, and some make the
//! terminal answer, and the answer is read as typed by whoever reads the terminal
//! next: the caller's shell. So with pipes, where the caller's fd 1 or 2 (each on
//! its own) is a terminal, the relay escapes what the box writes there as it does
//! for an untrusted box (below), with no cap. Carriage returns too, which send the
//! cursor back to write over what the line shows: progress meters, which draw with
//! them, are for `--tty`. Where the caller's fd is a file or a pipe, the bytes pass
//! unchanged. With `--tty` the caller has asked for a terminal, and the box's output
//! reaches theirs as it is, as with `docker run -t`. (The escaping takes the terminal
//! to read UTF-8: on one that reads an 8-bit set and acts on C1 bytes, a letter's
//! second byte may be one.)
//!
//! The box holds nothing up. The runtime's end of the box's stdin is non-blocking:
//! what the box does not read waits in the relay, one read's worth at most (nothing
//! more is read from the caller meanwhile), while the box's output keeps flowing,
//! and when the box ends the relay ends, whatever is left unread.
//!
//! A box whose output nobody trusts (step 09's VMM, which its guest may have taken
//! over) gets pipes for its output only, through a relay that is [`Relay::untrusted`]:
//! it escapes every character a terminal would act on rather than show (as
//! [`printable`](crate::lines::printable) does, but keeping newlines and tabs), and
//! passes on at most a fixed number of bytes of each stream, reading and counting
//! the rest, so that the box can neither drive the caller's terminal nor fill the
//! caller's disk. It does so whatever the output goes to, a file too: a VMM taken
//! over has no honest binary to write.

use crate::lines::acts_on_display;
use crate::run::pipe;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// How much the relay reads at once; also the most of the caller's input that waits
/// in the relay for a box that is not reading.
const CHUNK: usize = 4096;

/// One stream of the box's output: bytes from `from` go to `to`, the caller's
/// descriptor 1 or 2.
struct Copy {
    from: OwnedFd,
    to: RawFd,
    /// What is escaped, and how much is passed on: for a caller's terminal, and for
    /// an untrusted box's output.
    guard: Option<Guard>,
}

/// From the caller's stdin to the box.
struct Input {
    /// Our copy of the caller's stdin.
    from: OwnedFd,
    /// The end the box reads, non-blocking, so that a box that reads nothing blocks
    /// nothing of ours. Dropped with this copy: the box then reads end-of-file.
    to: OwnedFd,
    /// Read from the caller, not yet taken by the box: at most [`CHUNK`] bytes, as
    /// nothing more is read while any wait.
    waiting: Vec<u8>,
}

/// What is done to a stream of the box's output before it reaches the caller.
struct Guard {
    /// How many of the box's bytes are passed on at most ([`NO_CAP`]: all).
    cap: usize,
    /// How many have been.
    passed: usize,
    /// How many were read past the cap, and dropped.
    dropped: usize,
    /// The start of a character split between two reads, kept for the next.
    partial: Vec<u8>,
}

/// A cap no stream reaches: everything is passed on, escaped.
const NO_CAP: usize = usize::MAX;

/// The box's stdin, stdout and stderr, and the runtime's ends of them.
pub struct Relay {
    /// What becomes the box's fds 0, 1 and 2.
    box_side: [OwnedFd; 3],
    /// From the caller's stdin to the box, if stdin is relayed at all.
    input: Option<Input>,
    /// From the box to the caller's stdout and stderr.
    outputs: Vec<Copy>,
    /// The pseudo-terminal's master, for window sizes (only with `--tty`).
    master: Option<OwnedFd>,
}

/// Is any of fds 0, 1 and 2 a terminal?
pub fn caller_has_a_terminal() -> bool {
    (0..=2).any(is_a_terminal)
}

fn is_a_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty takes a descriptor number and touches no memory of ours.
    unsafe { libc::isatty(fd) == 1 }
}

impl Relay {
    // ANCHOR: pipes
    /// Pipes for the box: one for each of its fds 0, 1 and 2. What it writes to
    /// the caller's terminal is escaped; to a file or a pipe, passed on as it is.
    pub fn pipes() -> Result<Relay> {
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let to_caller = |from, to| Copy {
            from,
            to,
            guard: is_a_terminal(to).then(|| Guard::new(NO_CAP)),
        };
        Ok(Relay {
            box_side: [stdin_r, stdout_w, stderr_w],
            input: Some(Input::new(stdin_w)?),
            outputs: vec![to_caller(stdout_r, 1), to_caller(stderr_r, 2)],
            master: None,
        })
    }
    // ANCHOR_END: pipes

    /// A new pseudo-terminal for the box, as big as the caller's terminal when there
    /// is one.
    pub fn pty() -> Result<Relay> {
        let size = window_size(std::io::stdin().as_fd());
        let OpenptyResult { master, slave } =
            openpty(size.as_ref(), None).context("openpty(): open /dev/ptmx and its slave")?;
        Ok(Relay {
            box_side: [dup(slave.as_fd())?, dup(slave.as_fd())?, slave],
            // The master's copies share one open file, so all of them become
            // non-blocking; reading them, the relay waits in poll(2) anyway.
            input: Some(Input::new(dup(master.as_fd())?)?),
            outputs: vec![Copy {
                from: dup(master.as_fd())?,
                to: 1,
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
            copy.guard = Some(Guard::new(cap));
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
            if let Some(input) = &input {
                fds.push(input.wanted());
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                other => other.context("poll(signals, the box's output, its input)")?,
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
                        // What the box wrote just before the end is still in our
                        // ends. What it did not read of its input is dropped.
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

impl Input {
    /// The caller's stdin, to the box's end `to`, which becomes non-blocking.
    fn new(to: OwnedFd) -> Result<Input> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = fcntl(&to, FcntlArg::F_GETFL).context("fcntl(the box's stdin, F_GETFL)")?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(&to, FcntlArg::F_SETFL(flags))
            .context("fcntl(the box's stdin, F_SETFL, O_NONBLOCK)")?;
        Ok(Input {
            from: dup(std::io::stdin().as_fd())?,
            to,
            waiting: Vec::new(),
        })
    }

    /// What to wait for: more from the caller while nothing waits, else room in the
    /// box's end.
    fn wanted(&self) -> nix::poll::PollFd<'_> {
        use nix::poll::{PollFd, PollFlags};
        match self.waiting.is_empty() {
            true => PollFd::new(self.from.as_fd(), PollFlags::POLLIN),
            false => PollFd::new(self.to.as_fd(), PollFlags::POLLOUT),
        }
    }

    /// Read the caller's next bytes if none wait, and give the box as many waiting
    /// bytes as its end takes now. false when this direction is done: the caller's
    /// stdin has ended and nothing waits, or the box's end is closed everywhere.
    fn pass_on(&mut self) -> Result<bool> {
        if self.waiting.is_empty() {
            let mut buffer = [0u8; CHUNK];
            match read_now(self.from.as_fd(), &mut buffer)? {
                None => return Ok(false),
                Some(n) => self.waiting.extend_from_slice(&buffer[..n]),
            }
        }
        if self.waiting.is_empty() {
            return Ok(true);
        }
        match nix::unistd::write(&self.to, &self.waiting) {
            Ok(written) => {
                self.waiting.drain(..written);
                Ok(true)
            }
            // Full: the rest waits for poll(2) to say there is room.
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(true),
            // The box has closed its stdin everywhere.
            Err(Errno::EPIPE | Errno::EIO) => Ok(false),
            Err(e) => Err(e).context("write(the box's stdin)"),
        }
    }
}

impl Copy {
    /// Copy what `from` has now. false when `from` has ended.
    fn pass_on(&mut self) -> Result<bool> {
        let mut buffer = [0u8; CHUNK];
        let Some(n) = read_now(self.from.as_fd(), &mut buffer)? else {
            return Ok(false);
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

    /// The end of a guarded stream: what was left of a split character, escaped, and
    /// one line on stderr if the cap cut the stream.
    fn finish(mut self) -> Result<()> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        let rest: Vec<u8> = guard.partial.iter().flat_map(|b| escape_byte(*b)).collect();
        self.write(&rest)?;
        if guard.dropped > 0 {
            let stream = match self.to {
                1 => "stdout",
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

    /// Write all of `bytes` to the caller. false when the caller's side is gone.
    fn write(&self, bytes: &[u8]) -> Result<bool> {
        // SAFETY: 1 and 2 stay open for the runtime's whole life.
        let to = unsafe { BorrowedFd::borrow_raw(self.to) };
        let mut rest = bytes;
        while !rest.is_empty() {
            match nix::unistd::write(to, rest) {
                Ok(written) => rest = &rest[written..],
                Err(Errno::EINTR) => {}
                // Our caller's pipe or terminal is gone: nothing more to pass on.
                Err(Errno::EPIPE | Errno::EIO) => return Ok(false),
                Err(e) => return Err(e).with_context(|| format!("write({}, the relay)", self.to)),
            }
        }
        Ok(true)
    }
}

/// Read what `fd` has now into `buffer`: how many bytes (0 when it had nothing after
/// all: EINTR, or EAGAIN from a non-blocking master), or None when it has ended
/// (end-of-file, or EIO from a master whose slave is closed everywhere).
fn read_now(fd: BorrowedFd, buffer: &mut [u8]) -> Result<Option<usize>> {
    match nix::unistd::read(fd, buffer) {
        Ok(0) | Err(Errno::EIO) => Ok(None),
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(Some(0)),
        other => Ok(Some(other.context("read(the relay)")?)),
    }
}

impl Guard {
    fn new(cap: usize) -> Guard {
        Guard {
            cap,
            passed: 0,
            dropped: 0,
            partial: Vec::new(),
        }
    }

    /// What to write of `bytes`, the next the box wrote: up to the cap, escaped.
    /// Newlines and tabs pass; carriage returns do not, since one sends the cursor
    /// back over the line to write over what is shown there.
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
            escape(text, &mut out);
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

// ANCHOR: escape
/// `text` as it reaches a terminal from the relay: each character a terminal
/// would act on rather than show (`acts_on_display`: the C0 controls with ESC,
/// DEL, the C1 controls, and the invisible ones that make a line read other than
/// its bytes) written out as Rust writes it, `\u{1b}`, `\r`; but newlines and
/// tabs as they are.
fn escape(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        if acts_on_display(c) && c != '\n' && c != '\t' {
            out.extend(c.escape_default().to_string().bytes());
        } else {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
}
// ANCHOR_END: escape

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
        Guard::new(cap)
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

    /// A stream to the caller's terminal has no cap: everything arrives, escaped,
    /// however much there is (here twice what step 09 passes of a stream).
    #[test]
    fn a_stream_to_a_terminal_is_escaped_and_not_cut() {
        let mut g = guard(NO_CAP);
        assert_eq!(g.pass(b"\x1b]52;c;aGk=\x07"), b"\\u{1b}]52;c;aGk=\\u{7}");
        let lots = vec![b'x'; 2 << 20];
        assert_eq!(g.pass(&lots), lots);
        assert_eq!(g.dropped, 0);
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
