//! Step 08's plumbing: what is not the lesson of measuring.
//!
//! - [`Lab`]: the reference step binaries next to the running program, and a fresh
//!   rootfs in a temporary directory that is removed however the program ends;
//! - [`Measurement`] and [`Table`]: the rows, run in interleaved rounds, then
//!   rendered as a text table, as JSON, and as an SVG bar chart;
//! - [`Machine`]: a one-line description of where the numbers come from;
//! - [`run_with_peak_memory`]: run a process and learn its peak resident memory;
//! - an interrupt flag, so that Ctrl-C between two runs still cleans up.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// A median and the spread around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// What a table's section measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Start to exit of a whole process.
    Start,
    /// One operation, amortised over a loop.
    Operation,
    /// Memory.
    Memory,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::Start, Section::Operation, Section::Memory];

    pub fn key(self) -> &'static str {
        match self {
            Section::Start => "start",
            Section::Operation => "operation",
            Section::Memory => "memory",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Section::Start => "start to exit: the trivial command in each box, and a VM",
            Section::Operation => "one operation, timed over a loop and divided",
            Section::Memory => "memory",
        }
    }
}

/// Which side of the story a row belongs to (the chart's colours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Host,
    Container,
    Vm,
}

impl World {
    pub fn key(self) -> &'static str {
        match self {
            World::Host => "host",
            World::Container => "container",
            World::Vm => "vm",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            World::Host => "#8c8c8c",
            World::Container => "#2f6fbf",
            World::Vm => "#d9622b",
        }
    }
}

/// What one run of a measurement gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Value(f64),
    /// This host cannot do it (say why); not a failure.
    NotAvailable(String),
}

/// One row of the table: what it measures, and how to take one sample.
pub struct Measurement<'a> {
    pub section: Section,
    /// A short, stable name for JSON and tests: `container`, `exit-vmm`.
    pub key: &'static str,
    /// What the row is, for people: `full container, with limits`.
    pub name: &'static str,
    pub world: World,
    /// `ms`, `ns`, `KiB`.
    pub unit: &'static str,
    /// How it was measured, in a few words.
    pub how: String,
    pub sample: Sampler<'a>,
}

/// What came of a row once every round has run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured { samples: Vec<f64>, summary: Summary },
    NotAvailable(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub section: Section,
    pub key: &'static str,
    pub name: &'static str,
    pub world: World,
    pub unit: &'static str,
    pub how: String,
    pub outcome: Outcome,
}

/// A sample closure: one run of a measurement.
pub type Sampler<'a> = Box<dyn FnMut() -> Result<Sample> + 'a>;

impl<'a> Measurement<'a> {
    /// A start-to-exit row, in milliseconds.
    pub fn ms(
        key: &'static str,
        name: &'static str,
        world: World,
        how: &str,
        sample: Sampler<'a>,
    ) -> Self {
        Self::new(Section::Start, key, name, world, "ms", how, sample)
    }

    /// A one-operation row, in nanoseconds.
    pub fn ns(
        key: &'static str,
        name: &'static str,
        world: World,
        how: &str,
        sample: Sampler<'a>,
    ) -> Self {
        Self::new(Section::Operation, key, name, world, "ns", how, sample)
    }

    /// A memory row, in KiB.
    pub fn kib(
        key: &'static str,
        name: &'static str,
        world: World,
        how: &str,
        sample: Sampler<'a>,
    ) -> Self {
        Self::new(Section::Memory, key, name, world, "KiB", how, sample)
    }

    /// Say how it is measured in other words than the default.
    pub fn how(mut self, how: &str) -> Self {
        self.how = how.to_string();
        self
    }

    fn new(
        section: Section,
        key: &'static str,
        name: &'static str,
        world: World,
        unit: &'static str,
        how: &str,
        sample: Sampler<'a>,
    ) -> Self {
        Measurement {
            section,
            key,
            name,
            world,
            unit,
            how: how.to_string(),
            sample,
        }
    }
}

/// How a command is run, in short: the step's name without `-solution`, and its
/// flags without the rootfs and the command (the same in every row).
pub fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches("-solution")
                .to_string()
        })
        .unwrap_or_default();
    let mut words = vec![program];
    let mut args = command.get_args().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        match arg.as_ref() {
            "--" => break,
            "--rootfs" => {
                args.next();
            }
            _ => words.push(arg.into_owned()),
        }
    }
    words.join(" ")
}

/// The results, and where they were measured.
#[derive(Debug, Clone)]
pub struct Table {
    pub runs: u32,
    /// The trivial command every start-up row runs.
    pub trivial: String,
    pub machine: Machine,
    pub rows: Vec<Row>,
}

/// Format a number with about three significant digits, as a table should.
pub fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

impl Table {
    /// Did every measurement run (none failed)? Rows this host cannot do are fine.
    pub fn all_ran(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// The row with this key.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// The table for a terminal: a block per section, one row per measurement.
    pub fn render(&self) -> String {
        let name_width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "isolab 08-compare: the median of {} runs (after one warm-up run), and the spread from min to max",
            self.runs
        );
        let _ = writeln!(out, "machine: {}", self.machine.describe());
        let _ = writeln!(out, "trivial command: {}, from the rootfs", self.trivial);
        for section in Section::ALL {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.section == section).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{}", section.title());
            let _ = writeln!(
                out,
                "  {:name_width$}{:>9}{:>9}{:>9}  {:<5}how",
                "", "median", "min", "max", "unit"
            );
            for row in rows {
                let _ = write!(out, "  {:name_width$}", row.name);
                match &row.outcome {
                    Outcome::Measured { summary, .. } => {
                        let _ = writeln!(
                            out,
                            "{:>9}{:>9}{:>9}  {:<5}{}",
                            number(summary.median),
                            number(summary.min),
                            number(summary.max),
                            row.unit,
                            row.how
                        );
                    }
                    Outcome::NotAvailable(why) => {
                        let _ = writeln!(out, "not available here: {why}");
                    }
                    Outcome::Failed(why) => {
                        let _ = writeln!(out, "FAILED: {why}");
                    }
                }
            }
        }
        out
    }

    /// The results as JSON: every row with its samples, and the machine.
    pub fn to_json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = json!({
                    "section": r.section.key(),
                    "key": r.key,
                    "name": r.name,
                    "world": r.world.key(),
                    "unit": r.unit,
                    "how": r.how,
                });
                let fields = match &r.outcome {
                    Outcome::Measured { samples, summary } => json!({
                        "status": "ok",
                        "median": summary.median,
                        "min": summary.min,
                        "max": summary.max,
                        "samples": samples,
                    }),
                    Outcome::NotAvailable(why) => json!({"status": "not available", "why": why}),
                    Outcome::Failed(why) => json!({"status": "failed", "why": why}),
                };
                if let (Some(row), Some(fields)) = (row.as_object_mut(), fields.as_object()) {
                    row.extend(fields.clone());
                }
                row
            })
            .collect();
        let m = &self.machine;
        let doc = json!({
            "step": "08-compare",
            "runs": self.runs,
            "trivial command": self.trivial,
            "machine": {
                "cpu": m.cpu,
                "cpus": m.cpus,
                "kernel": m.kernel,
                "under a hypervisor": m.virtualized,
                "kvm": m.kvm,
                "cgroups": m.cgroups,
                "build": m.build,
            },
            "rows": rows,
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A horizontal bar chart, one panel per section, each on its own scale: the bar
    /// is the median, the whisker the spread from min to max.
    pub fn to_svg(&self) -> String {
        const WIDTH: f64 = 820.0;
        const LABEL: f64 = 250.0; // where the bars start
        const BARS: f64 = 440.0; // the panel's width
        const ROW: f64 = 24.0;
        let mut body = String::new();
        let mut y = 58.0;
        for section in Section::ALL {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.section == section).collect();
            if rows.is_empty() {
                continue;
            }
            let units: Vec<&str> = rows.iter().map(|r| r.unit).collect();
            let unit = units.first().copied().unwrap_or("");
            let same_unit = units.iter().all(|u| *u == unit);
            y += 22.0;
            let heading = if same_unit {
                format!("{} ({unit})", section.title())
            } else {
                section.title().to_string()
            };
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y}" class="section">{}</text>"#,
                escape(&heading)
            );
            y += 10.0;
            // The scale leaves room beyond the largest median; a whisker longer than
            // that (one slow run on a busy machine) is cut at the edge, with an arrow.
            let scale = 1.3
                * rows
                    .iter()
                    .filter_map(|r| match &r.outcome {
                        Outcome::Measured { summary, .. } => Some(summary.median),
                        _ => None,
                    })
                    .fold(0.0_f64, f64::max);
            for row in rows {
                let mid = y + ROW / 2.0;
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" class="label">{}</text>"#,
                    LABEL - 8.0,
                    mid + 4.0,
                    escape(row.name)
                );
                match &row.outcome {
                    Outcome::Measured { summary, .. } if scale > 0.0 => {
                        let x = |v: f64| LABEL + BARS * v / scale;
                        let _ = writeln!(
                            body,
                            r#"<rect x="{LABEL}" y="{}" width="{:.1}" height="{}" fill="{}"/>"#,
                            y + 4.0,
                            (x(summary.median) - LABEL).max(1.0),
                            ROW - 8.0,
                            row.world.colour()
                        );
                        let (x0, x1) = (x(summary.min), x(summary.max).min(LABEL + BARS));
                        let end = if summary.max > scale {
                            // an arrowhead: the run went on past the edge
                            format!(
                                "M{:.1} {}L{x1:.1} {mid}L{:.1} {}",
                                x1 - 5.0,
                                mid - 4.0,
                                x1 - 5.0,
                                mid + 4.0
                            )
                        } else {
                            format!("M{x1:.1} {}V{}", mid - 4.0, mid + 4.0)
                        };
                        let _ = writeln!(
                            body,
                            r#"<path d="M{x0:.1} {mid}H{x1:.1}M{x0:.1} {}V{}{end}" class="whisker"/>"#,
                            mid - 4.0,
                            mid + 4.0,
                        );
                        let shown = if same_unit {
                            number(summary.median)
                        } else {
                            format!("{} {}", number(summary.median), row.unit)
                        };
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{}" class="value">{}</text>"#,
                            x1.max(x(summary.median)) + 6.0,
                            mid + 4.0,
                            escape(&shown)
                        );
                    }
                    Outcome::Measured { .. } => {}
                    Outcome::NotAvailable(_) => {
                        let _ = writeln!(
                            body,
                            r#"<text x="{LABEL}" y="{}" class="value">not available here</text>"#,
                            mid + 4.0
                        );
                    }
                    Outcome::Failed(_) => {
                        let _ = writeln!(
                            body,
                            r#"<text x="{LABEL}" y="{}" class="value">failed</text>"#,
                            mid + 4.0
                        );
                    }
                }
                y += ROW;
            }
        }
        let height = y + 16.0;
        let mut legend = String::new();
        let mut lx = 10.0;
        for (world, name) in [
            (World::Host, "host"),
            (World::Container, "container"),
            (World::Vm, "virtual machine"),
        ] {
            let _ = write!(
                legend,
                r#"<rect x="{lx}" y="40" width="12" height="12" fill="{}"/><text x="{}" y="50" class="value">{name}</text>"#,
                world.colour(),
                lx + 17.0
            );
            lx += 30.0 + 8.0 * name.len() as f64;
        }
        let _ = write!(
            legend,
            r#"<text x="{lx}" y="50" class="value">bar: the median of {} runs; whisker: min to max</text>"#,
            self.runs
        );
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<title>Containers and a VM measured on one machine: start to exit, one operation, memory</title>
<style>
.title {{ font-size: 15px; font-weight: bold; }}
.section {{ font-size: 13px; font-weight: bold; }}
.label {{ text-anchor: end; }}
.value {{ fill: #333; }}
.whisker {{ stroke: #222; stroke-width: 1.2; fill: none; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" class="title">Both worlds, measured on one machine</text>
<text x="10" y="36" class="value">{}</text>
{legend}
{body}</svg>
"##,
            escape(&self.machine.describe())
        )
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where the numbers were measured.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    /// The CPU says it runs under a hypervisor (the `hypervisor` flag).
    pub virtualized: bool,
    /// Which KVM module provides /dev/kvm.
    pub kvm: String,
    pub cgroups: String,
    /// `release` or `debug`: the profile the step binaries were built with.
    pub build: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let virtualized = field("flags").is_some_and(|f| f.split(' ').any(|f| f == "hypervisor"));
        let kvm = ["kvm_intel", "kvm_amd", "kvm_pvm"]
            .into_iter()
            .filter(|m| Path::new("/sys/module").join(m).exists())
            .collect::<Vec<_>>()
            .join(", ");
        use crate::cgroup::Kind;
        let cgroups = match crate::cgroup::Layout::detect().map(|l| l.kind) {
            Ok(Kind::V2) => "v2",
            Ok(Kind::V1) => "v1",
            Ok(Kind::Hybrid) => "hybrid",
            _ => "none",
        };
        Machine {
            cpu: field("model name").unwrap_or_else(|| "an unknown CPU".into()),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            virtualized,
            kvm: if kvm.is_empty() { "?".into() } else { kvm },
            cgroups: cgroups.into(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
        }
    }

    /// One line: `Intel(R) Xeon(R) Processor, 2 CPUs, Linux 6.18.44, ...`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} CPUs, Linux {}, {}, KVM from {}, cgroups {}, {} build",
            self.cpu,
            self.cpus,
            self.kernel,
            if self.virtualized {
                "itself a VM"
            } else {
                "bare metal"
            },
            self.kvm,
            self.cgroups,
            self.build
        )
    }
}

/// The step binaries next to this program, and a rootfs of its own.
pub struct Lab {
    bins: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Find the directory this program was built in (where cargo also put the
    /// reference steps and the probe) and build a rootfs in a new temporary
    /// directory, removed when the lab is dropped.
    pub fn new() -> Result<Lab> {
        let exe = std::env::current_exe().context("readlink(/proc/self/exe)")?;
        let bins = exe
            .parent()
            .context("the directory of this program")?
            .to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("isolab-compare-")
            .tempdir()
            .context("making a temporary directory for the rootfs")?;
        let lab = Lab { bins, dir };
        let probe = lab.bin("probe")?;
        crate::rootfs::build(&lab.rootfs(), &probe)?;
        Ok(lab)
    }

    /// The trivial command every start-up row runs, as the box sees it: busybox's
    /// `/bin/true`, or, in a rootfs without busybox, `/bin/probe exit 0`.
    pub fn trivial(&self) -> Vec<&'static str> {
        if self.rootfs().join("bin/true").exists() {
            vec!["/bin/true"]
        } else {
            vec!["/bin/probe", "exit", "0"]
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A binary next to this program, which must be there.
    pub fn bin(&self, name: &str) -> Result<PathBuf> {
        let path = self.bins.join(name);
        if !path.exists() {
            let build = if cfg!(debug_assertions) {
                "cargo build"
            } else {
                "cargo build --release"
            };
            bail!(
                "{} is missing: this step runs the reference steps next to it, so build them first with `{build}`",
                path.display()
            );
        }
        Ok(path)
    }

    /// A command for the binary `name` next to this program, with these arguments.
    /// Its output is discarded, except for errors, which would say why a run failed.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, name: &str, args: &[S]) -> Result<Command> {
        let mut command = Command::new(self.bin(name)?);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Ok(command)
    }

    /// A container step's command: `NAME --rootfs ROOTFS FLAGS -- COMMAND`.
    pub fn step(&self, name: &str, flags: &[&str], command: &[&str]) -> Result<Command> {
        let mut args = vec!["--rootfs".to_string(), self.rootfs().display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().map(|s| s.to_string()));
        self.command(name, &args)
    }

    /// The trivial command as the host sees it: its path inside the rootfs.
    pub fn trivial_on_host(&self) -> Vec<String> {
        let mut command: Vec<String> = self.trivial().iter().map(|s| s.to_string()).collect();
        command[0] = format!("{}{}", self.rootfs().display(), command[0]);
        command
    }
}

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
/// process had before its execve(2): a copy of ours, its parent's, which is larger.)
/// A run that fails is an error, with the command's stderr.
pub fn run_with_peak_memory(command: &Command) -> Result<Finished> {
    use nix::sys::ptrace::{self, Event, Options};
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
    let code = loop {
        // The child is ours, and nothing else waits for it (std's Child never does
        // unless asked).
        match waitpid(pid, None).with_context(|| format!("waitpid({pid}) for {program}"))? {
            // The stop at its execve: from here on, stop it again when it exits.
            WaitStatus::Stopped(_, nix::sys::signal::Signal::SIGTRAP) if !options_set => {
                ptrace::setoptions(
                    pid,
                    Options::PTRACE_O_TRACEEXIT | Options::PTRACE_O_EXITKILL,
                )
                .context("ptrace(PTRACE_SETOPTIONS, TRACEEXIT | EXITKILL)")?;
                options_set = true;
                ptrace::cont(pid, None).context("ptrace(PTRACE_CONT)")?;
            }
            WaitStatus::PtraceEvent(_, _, event) if event == Event::PTRACE_EVENT_EXIT as i32 => {
                peak_kib = Some(vm_hwm_kib(pid)?);
                ptrace::cont(pid, None).context("ptrace(PTRACE_CONT)")?;
            }
            // Any other stop is a signal on its way to the process: pass it on.
            WaitStatus::Stopped(_, signal) => {
                ptrace::cont(pid, Some(signal)).context("ptrace(PTRACE_CONT, signal)")?;
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
    let peak_kib = peak_kib.with_context(|| format!("{program} exited without its exit stop"))?;
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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turn SIGINT and SIGTERM into a flag that [`check_interrupted`] reads between
/// runs, so that Ctrl-C ends the program through its normal path, which removes
/// the rootfs. (The step being measured gets the terminal's SIGINT too, and its
/// run fails, which also ends the measuring.)
pub fn catch_interrupts() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn note(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("sigaction({signal})"))?;
    }
    Ok(())
}

/// Fail if SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: stopped measuring, and removed the rootfs");
    }
    Ok(())
}

/// The `key: value` line `key` of a probe's (or a step's) output, as a number:
/// `each: 87.3 ns` gives 87.3.
pub fn value_of(output: &str, key: &str) -> Result<f64> {
    let report = crate::report::Report::parse(output);
    let text = report.get(key);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no number in a `{key}:` line of: {}", output.trim()))
}
