//! Running a process to its end, with its peak memory and its output.
//! And two things `10-compare --break` needs: wait4(2)'s peak, and whether a
//! child has exited yet.

use crate::lines::{Key, Lines};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

/// What a finished process gave back, with its peak memory.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
    /// The process's peak resident memory (VmHWM), in KiB.
    pub peak_kib: u64,
}

// ANCHOR: peak_memory
/// Run `command` to its end and learn its peak resident memory: VmHWM in
/// /proc/PID/status, read at the moment it exits. To catch that moment we trace
/// it: PTRACE_O_TRACEEXIT stops it on its way out, with its memory still there.
/// (wait4's ru_maxrss would be simpler, but it also remembers the memory the
/// process had before its execve(2): a copy of ours, its parent's, which is
/// larger.)
/// A run that fails is an error, with the command's stderr.
pub fn run_with_peak_memory(command: &Command) -> Result<Finished> {
    use nix::sys::ptrace::{self, Event, Options};
    use nix::sys::signal::Signal;
    use nix::sys::wait::{WaitStatus, waitpid};
    use std::os::unix::process::CommandExt;
    let program = command.get_program().to_string_lossy().into_owned();
    // A copy, so that each run adds its pre_exec hook to a command of its own.
    let mut command = copy(command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes one system call,
    // ptrace(PTRACE_TRACEME), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut peak_kib = None;
    let mut options_set = false;
    let exit_event = Event::PTRACE_EVENT_EXIT as i32;
    let code = loop {
        // The child is ours, and nothing else waits for it (std's Child never does
        // unless asked).
        let status = waitpid(pid, None);
        match status.with_context(|| format!("waitpid({pid}) for {program}"))? {
            // The stop at its execve: from here on, stop it again when it exits.
            WaitStatus::Stopped(_, Signal::SIGTRAP) if !options_set => {
                ptrace::setoptions(
                    pid,
                    Options::PTRACE_O_TRACEEXIT | Options::PTRACE_O_EXITKILL,
                )
                .context("ptrace(PTRACE_SETOPTIONS, TRACEEXIT | EXITKILL)")?;
                options_set = true;
                ptrace::cont(pid, None).context("ptrace(PTRACE_CONT)")?;
            }
            WaitStatus::PtraceEvent(_, _, event) if event == exit_event => {
                peak_kib = Some(vm_hwm_kib(pid)?);
                ptrace::cont(pid, None).context("ptrace(PTRACE_CONT)")?;
            }
            // Any other stop is a signal on its way to the process: pass it on.
            WaitStatus::Stopped(_, signal) => {
                ptrace::cont(pid, signal).context("ptrace(PTRACE_CONT, signal)")?;
            }
            WaitStatus::Exited(_, code) => break Some(code),
            WaitStatus::Signaled(..) => break None,
            _ => ptrace::cont(pid, None).context("ptrace(PTRACE_CONT)")?,
        }
    };
    let (stdout, stderr) = (stdout.join(), stderr.join());
    if code != Some(0) {
        bail!(
            "{program} failed ({}): {}",
            code.map_or("killed by a signal".into(), |c| format!("exit code {c}")),
            stderr.trim()
        );
    }
    let Some(peak_kib) = peak_kib else {
        bail!("{program} exited without its exit stop");
    };
    Ok(Finished {
        stdout,
        stderr,
        peak_kib,
    })
}
// ANCHOR_END: peak_memory

/// What wait4(2) says of a finished process: its ru_maxrss, the simpler way
/// [`run_with_peak_memory`] does not take (`10-compare --break wait4`).
#[derive(Debug, Clone, Copy)]
pub struct MaxRss {
    /// ru_maxrss, in KiB: the largest of the process's own peak and the peak of
    /// the memory it had before its execve(2).
    pub child_kib: u64,
    /// Our own peak (VmHWM), read just before we started it.
    pub ours_kib: u64,
}

/// Run `command` to its end and take its peak from wait4(2)'s ru_maxrss. The
/// kernel counts into it the memory the process had before its execve(2), which
/// was ours: a forked child starts as a copy of its parent, and a vforked one
/// uses its parent's memory until the exec. A run that fails is an error.
pub fn run_with_maxrss(command: &Command) -> Result<MaxRss> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut command = copy(command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let ours_kib = vm_hwm_kib(nix::unistd::getpid())?;
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let stderr = read_in_background(child.stderr.take());
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: the child is ours and no one else waits for it (std's Child
        // never does unless asked); status and usage are ours to write.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).with_context(|| format!("wait4({pid}) for {program}"));
        }
    }
    let stderr = stderr.join();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let how = if libc::WIFEXITED(status) {
            format!("exit code {}", libc::WEXITSTATUS(status))
        } else {
            "killed by a signal".into()
        };
        bail!("{program} failed ({how}): {}", stderr.trim());
    }
    Ok(MaxRss {
        child_kib: usage.ru_maxrss as u64,
        ours_kib,
    })
}

/// Has our child `pid` exited? Before it is waited for, an exited process stays
/// as a zombie (state Z in /proc/PID/stat); a process still at work is in any
/// other state. For `10-compare --break start-only`, which looks just after its
/// clock stopped.
pub fn has_exited(pid: u32) -> Result<bool> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // `PID (COMMAND) STATE ...`: the command may hold spaces and parentheses.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .with_context(|| format!("no state in {path}"))?;
    Ok(matches!(state, 'Z' | 'X'))
}

/// The same program, arguments, environment and directory, without hooks.
fn copy(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}

/// VmHWM, the peak resident set size, from /proc/PID/status.
fn vm_hwm_kib(pid: nix::unistd::Pid) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM line in {path}"))
}

/// Read a pipe to its end on a thread of its own; `join` gives the text.
struct Background(Option<std::thread::JoinHandle<String>>);

fn read_in_background(pipe: Option<impl std::io::Read + Send + 'static>) -> Background {
    Background(pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    }))
}

impl Background {
    fn join(self) -> String {
        self.0.and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

/// The `key: value` line `key` of a probe's (or a step's) output, as a number:
/// `each: 87.3 ns` gives 87.3.
pub fn value_of<K: Key>(output: &str, key: K) -> Result<f64> {
    Lines::parse(output)
        .get(key)
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .with_context(|| {
            format!(
                "no number in a `{}:` line of: {}",
                key.text(),
                output.trim()
            )
        })
}
