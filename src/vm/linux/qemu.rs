//! Starting QEMU on a kernel and an initramfs, and reading its serial console.
//!
//! The machine is QEMU's default PC with no devices but one serial port, which is
//! the kernel's console (`console=ttyS0`) and QEMU's stdout (`-serial stdio`); we
//! read it line by line as it comes. `-no-reboot` turns the guest's reboot, and
//! the kernel's reboot after a panic (`panic=-1`), into QEMU exiting.
//!
//! Nothing outlives a run. The initramfs is a memfd QEMU inherits as fd 3 (it
//! reads `/dev/fd/3`); QEMU gets SIGKILL from the kernel if we die (PR_SET_PDEATHSIG),
//! and from us on a timeout or any early return (`Running`'s drop); there is no
//! temporary file.
//!
//! Accelerators: KVM when asked or when [`crate::vm::linux::run`] tries it first, else
//! TCG, QEMU's own emulation of the CPU, slower but able to run anywhere. A host
//! can offer a /dev/kvm that runs steps 07-08's tiny guests and not a real kernel.
//! The CI host is a VM without VMX whose /dev/kvm is `kvm_pvm` (KVM on shadow
//! page tables): there the kernel's decompressor crawls for about 80 s, all of it
//! in the host kernel, and then KVM fails to emulate a `lock cmpxchg16b` ("KVM
//! internal error", an emulation failure). So a KVM boot must show the kernel's
//! first console line within [`KVM_FIRST_LINE`], or it is given up.

use anyhow::{Context, Result, bail};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The QEMU binary for x86-64 guests.
pub const BINARY: &str = "qemu-system-x86_64";
/// What installs it on Debian and Ubuntu.
pub const INSTALL: &str = "apt-get install qemu-system-x86";

/// Within how long a KVM boot must print the kernel's first console line. Under
/// TCG on a 2-core nested host that line comes 0.8 s after QEMU starts; under a
/// working KVM it is a fraction of that.
pub const KVM_FIRST_LINE: Duration = Duration::from_secs(3);

/// QEMU on PATH, or one line that says how to install it.
pub fn find() -> Result<PathBuf> {
    super::kernel::which(BINARY)
        .with_context(|| format!("QEMU is not installed (no {BINARY} on PATH): {INSTALL}"))
}

/// `QEMU emulator version 7.2.22 (Debian ...)`: the first line of `--version`.
pub fn version(qemu: &Path) -> Result<String> {
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", qemu.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// How the guest's CPU ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// TCG: QEMU translates the guest's instructions.
    Emulated,
    /// KVM: the guest runs on the CPU, in VMX or SVM non-root mode.
    Kvm,
}

impl Accel {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Accel::Emulated => &["-accel", "tcg"],
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Accel::Emulated => "QEMU, emulated",
            Accel::Kvm => "QEMU, KVM",
        })
    }
}

/// The machine to start.
pub struct Machine<'a> {
    pub qemu: &'a Path,
    pub kernel: &'a Path,
    pub initramfs: &'a File,
    /// The kernel's command line.
    pub append: &'a str,
    pub memory_mib: u32,
    pub cpus: u32,
}

/// When to stop waiting.
pub struct Limits<'a> {
    /// The whole run, from QEMU's start.
    pub total: Duration,
    /// The first console line, if it must come sooner.
    pub first_line: Option<Duration>,
    /// The line after which the run is complete (QEMU is then given a moment to
    /// exit by itself, and killed if it does not).
    pub done: &'a str,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The `done` line came.
    Done,
    /// QEMU exited before it.
    Exited(String),
    /// No console line within `first_line`.
    Silent(Duration),
    /// Not done within `total`.
    TimedOut(Duration),
}

/// What a run gave back.
#[derive(Debug)]
pub struct Session {
    pub accel: Accel,
    /// Each console line (without its line end), with when it came after QEMU started.
    pub console: Vec<(Duration, String)>,
    /// What QEMU itself said on stderr.
    pub stderr: String,
    pub ending: Ending,
    /// From QEMU's start to its end.
    pub wall: Duration,
}

/// QEMU, killed and reaped when dropped, whatever happened.
struct Running {
    child: Child,
}

impl Running {
    fn kill_and_wait(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Give QEMU up to `grace` to exit by itself, then kill it.
    fn end(&mut self, grace: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + grace;
        while Instant::now() < end {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        self.kill_and_wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_and_wait();
        }
    }
}

/// Start QEMU on `machine` with `accel`, read its console until `limits.done`,
/// its exit, or a deadline; QEMU is gone when this returns.
pub fn run(machine: &Machine, accel: Accel, limits: &Limits) -> Result<Session> {
    let mut cmd = Command::new(machine.qemu);
    cmd.args(accel.flags())
        .args(["-m", &machine.memory_mib.to_string()])
        .args(["-smp", &machine.cpus.to_string()])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(machine.kernel)
        .args(["-initrd", "/dev/fd/3"])
        .args(["-append", machine.append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    inherit_as_fd3_and_die_with_us(&mut cmd, machine.initramfs);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", machine.qemu.display()))?;
    let mut qemu = Running { child };
    let lines = read_lines(qemu.child.stdout.take().expect("piped stdout"));
    let mut stderr_pipe = qemu.child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    let mut console = Vec::new();
    let ending = loop {
        let elapsed = start.elapsed();
        let first_line = limits
            .first_line
            .filter(|first| console.is_empty() && *first < limits.total);
        let deadline = first_line.unwrap_or(limits.total);
        let Some(left) = deadline.checked_sub(elapsed) else {
            qemu.kill_and_wait();
            break match first_line {
                Some(_) => Ending::Silent(deadline),
                None => Ending::TimedOut(deadline),
            };
        };
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line == limits.done;
                console.push((start.elapsed(), line));
                if done {
                    // The guest powers off now; give QEMU a moment, then make sure.
                    qemu.end(Duration::from_secs(2));
                    break Ending::Done;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let status = qemu.end(Duration::from_secs(2));
                break Ending::Exited(
                    status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown status".into()),
                );
            }
        }
    };
    let wall = start.elapsed();
    drop(qemu);
    Ok(Session {
        accel,
        console,
        stderr: stderr.join().unwrap_or_default(),
        ending,
        wall,
    })
}

/// The child gets the initramfs as fd 3 (without close-on-exec) and nothing else
/// but stdin, stdout and stderr, and asks the kernel for SIGKILL when we die.
fn inherit_as_fd3_and_die_with_us(cmd: &mut Command, initramfs: &File) {
    use std::os::unix::process::CommandExt;
    let fd = initramfs.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure only makes system calls (dup2,
    // fcntl, close_range, prctl, getppid), which are async-signal-safe; `fd` stays
    // open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_close_range, 4, u32::MAX, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The death signal comes when the thread that forked us ends: the
            // caller waits for QEMU on that thread, so that is when we end.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Dead already, before the prctl? Then nobody would send the signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent died"));
            }
            Ok(())
        });
    }
}

/// Read `pipe` in a thread, one line at a time (lossy UTF-8, without "\r\n").
fn read_lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match std::io::BufRead::read_until(&mut reader, b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Fail with the end of the console when a session did not finish.
pub fn explain(session: &Session) -> Result<()> {
    let tail = || {
        let lines: Vec<&str> = session
            .console
            .iter()
            .rev()
            .take(15)
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let stderr = session.stderr.trim();
        let mut text = lines.join("\n  ");
        if !stderr.is_empty() {
            text.push_str(&format!("\n  (QEMU said: {stderr})"));
        }
        text
    };
    match &session.ending {
        Ending::Done => Ok(()),
        Ending::Exited(status) => bail!(
            "{} exited ({status}) before the guest was done; the console ended with:\n  {}",
            session.accel,
            tail()
        ),
        Ending::Silent(after) => bail!(
            "{}: the kernel printed nothing within {after:?}",
            session.accel
        ),
        Ending::TimedOut(after) => bail!(
            "{}: the guest was not done within {after:?}, so QEMU was killed; the console ended with:\n  {}",
            session.accel,
            tail()
        ),
    }
}
