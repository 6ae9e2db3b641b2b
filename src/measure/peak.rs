//! Running a process to its end, with its peak memory and its output.

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
