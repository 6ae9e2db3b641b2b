//! The rows of step 10's table, how each takes a sample, and the table as text.

use super::Machine;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// A median and the spread around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
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

    pub fn colour(self) -> &'static str {
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
    Measured {
        samples: Vec<f64>,
        /// When each sample was taken: its place among all the samples of the
        /// run, warm-ups included, counted from 0.
        order: Vec<usize>,
        summary: Spread,
    },
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
    /// The mistakes made on purpose (`--break`), which the table owns up to.
    pub broken: Vec<Broken>,
}

/// A mistake made on purpose, and what it changed.
#[derive(Debug, Clone)]
pub struct Broken {
    /// Its name, as `--break` takes it: `mean`.
    pub mistake: String,
    /// What it changed, and what it found, for people: one sentence.
    pub says: String,
    /// What it counted, by name, for the JSON.
    pub counts: Vec<(&'static str, u64)>,
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
            "isolab 10-compare: the median of {} runs (after one warm-up run), and the spread from min to max",
            self.runs
        );
        let _ = writeln!(out, "machine: {}", self.machine.describe());
        let _ = writeln!(out, "trivial command: {}, from the rootfs", self.trivial);
        for broken in &self.broken {
            let _ = writeln!(
                out,
                "broken on purpose, {}: {}",
                broken.mistake, broken.says
            );
        }
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
}
