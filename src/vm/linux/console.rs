//! Reading the guest's serial console back: the lines our init prints (see
//! init.sh) among whatever the kernel printed before it.
//!
//! ```text
//! [    0.000000] Linux version 6.1.0-57-cloud-amd64 ...     the kernel: ignored
//! isolab-guest: up 2.31 s after the kernel started
//! isolab-guest: kernel 6.1.0-57-cloud-amd64
//! isolab-guest: begin 001
//! isolab-guest: stdout 001
//! ...                                                      the command's stdout
//! isolab-guest: stderr 001
//! ...                                                      its stderr
//! isolab-guest: end 001 exit 0
//! isolab-guest: done
//! ```

use std::time::Duration;

/// What every line of our init starts with.
pub const PREFIX: &str = "isolab-guest: ";
/// Init's last line before it powers off.
pub const DONE: &str = "isolab-guest: done";

/// One command's run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The command as it was given (a shell script).
    pub command: String,
    /// Its exit code as the guest's shell saw it: 128+N for a death by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// When its end marker came, after QEMU started: for the first command, the
    /// time from nothing to a process's work done on a booted kernel.
    pub ended: Duration,
}

/// What the console said.
#[derive(Debug, Default)]
pub struct Parsed {
    /// When init's first line came, after QEMU started.
    pub up: Option<Duration>,
    /// Init's lines that are not about a command: `up ...`, `kernel ...`, the
    /// cgroup lines, as (key, rest).
    pub facts: Vec<(String, String)>,
    /// The commands that ended, in order.
    pub outputs: Vec<Output>,
    /// An `error: ...` line from init.
    pub error: Option<String>,
}

impl Parsed {
    /// The rest of init's line that starts with `key` (`kernel`, `cgroup2 controllers`).
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    None,
    Stdout,
    Stderr,
}

/// Read the console lines (each with when it came); `commands` are what was run,
/// in order, to pair each output with its command.
pub fn parse(console: &[(Duration, String)], commands: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut current: Option<(String, Output)> = None;
    let mut stream = Stream::None;
    for (when, line) in console {
        if let Some((n, out)) = &mut current {
            let marker = line.strip_prefix(PREFIX);
            if marker == Some(&format!("stdout {n}")) {
                stream = Stream::Stdout;
                continue;
            }
            if marker == Some(&format!("stderr {n}")) {
                stream = Stream::Stderr;
                continue;
            }
            if let Some(code) = marker.and_then(|m| m.strip_prefix(&format!("end {n} exit "))) {
                out.code = code.trim().parse().unwrap_or(-1);
                out.ended = *when;
                let (_, out) = current.take().expect("current");
                parsed.outputs.push(out);
                stream = Stream::None;
                continue;
            }
            match stream {
                Stream::Stdout => push_line(&mut out.stdout, line),
                Stream::Stderr => push_line(&mut out.stderr, line),
                Stream::None => {}
            }
            continue;
        }
        let Some(said) = line.strip_prefix(PREFIX) else {
            continue; // the kernel's own lines
        };
        if parsed.up.is_none() {
            parsed.up = Some(*when);
        }
        if let Some(n) = said.strip_prefix("begin ") {
            let index = n.trim().parse::<usize>().unwrap_or(0);
            let command = commands
                .get(index.wrapping_sub(1))
                .cloned()
                .unwrap_or_default();
            current = Some((
                n.trim().to_string(),
                Output {
                    command,
                    ..Output::default()
                },
            ));
            stream = Stream::None;
        } else if let Some(error) = said.strip_prefix("error: ") {
            parsed.error = Some(error.to_string());
        } else if said != "done" {
            let (key, rest) = fact(said);
            parsed.facts.push((key.to_string(), rest.to_string()));
        }
    }
    parsed
}

/// Split `cgroup2 controllers cpu memory` into the key (`cgroup2 controllers`)
/// and the rest; other facts have a one-word key.
fn fact(said: &str) -> (&str, &str) {
    let words = if said.starts_with("cgroup2 ") { 2 } else { 1 };
    let mut cut = 0;
    for (i, _) in said.match_indices(' ').take(words) {
        cut = i;
    }
    if cut == 0 || said.split(' ').count() <= words {
        return (said, "");
    }
    (&said[..cut], &said[cut + 1..])
}

fn push_line(to: &mut String, line: &str) {
    to.push_str(line);
    to.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(Duration, String)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (Duration::from_millis(i as u64), l.to_string()))
            .collect()
    }

    #[test]
    fn markers_frame_each_commands_streams_and_the_kernels_lines_are_ignored() {
        let console = lines(
            "[    0.000000] Linux version 6.1.0\n\
             isolab-guest: up 1.92 s after the kernel started\n\
             isolab-guest: kernel 6.1.0-57-cloud-amd64\n\
             isolab-guest: cgroup2 controllers cpu memory pids\n\
             isolab-guest: begin 001\n\
             isolab-guest: stdout 001\n\
             hello\n\
             \n\
             isolab-guest: stderr 001\n\
             isolab-guest: end 001 exit 0\n\
             isolab-guest: begin 002\n\
             isolab-guest: stdout 002\n\
             isolab-guest: stderr 002\n\
             oops\n\
             isolab-guest: end 002 exit 137\n\
             isolab-guest: done",
        );
        let parsed = parse(&console, &["echo hello; echo".into(), "false".into()]);
        assert_eq!(parsed.up, Some(Duration::from_millis(1)));
        assert_eq!(parsed.fact("kernel"), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(parsed.fact("cgroup2 controllers"), Some("cpu memory pids"));
        assert_eq!(
            parsed.outputs,
            vec![
                Output {
                    command: "echo hello; echo".into(),
                    code: 0,
                    stdout: "hello\n\n".into(),
                    stderr: "".into(),
                    ended: Duration::from_millis(9),
                },
                Output {
                    command: "false".into(),
                    code: 137,
                    stdout: "".into(),
                    stderr: "oops\n".into(),
                    ended: Duration::from_millis(14),
                }
            ]
        );
        assert_eq!(parsed.error, None);
    }

    #[test]
    fn an_unfinished_command_is_not_an_output_and_inits_error_is_kept() {
        let console = lines(
            "isolab-guest: error: mount cgroup2 on /sys/fs/cgroup\n\
             isolab-guest: begin 001\n\
             isolab-guest: stdout 001\n\
             half",
        );
        let parsed = parse(&console, &["x".into()]);
        assert!(parsed.outputs.is_empty());
        assert_eq!(
            parsed.error.as_deref(),
            Some("mount cgroup2 on /sys/fs/cgroup")
        );
    }
}
