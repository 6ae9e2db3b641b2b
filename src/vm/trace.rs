//! The exits of one run, in order, as the KVM steps print them.

use super::Exit;
use super::exit::Kind;
use std::fmt::{self, Write as _};

/// The exits of one run, in order, each with an optional note on what the host did
/// about it. Printed compactly: a run of the same kind shows its first
/// [`Trace::SHOWN`] exits in full, then a count.
///
/// What it keeps is bounded, whatever the guest does: the first few exits of each
/// of the first [`Trace::RUNS`] runs, notes of at most [`Trace::NOTE`] characters,
/// and counts. A guest that exits a million times costs the host a count, not a
/// million entries (a jailed VMM's heap must not grow with its guest's whims).
#[derive(Debug, Default)]
pub struct Trace {
    /// Runs of exits of one kind, in order, the first few of each kept whole.
    runs: Vec<Run>,
    /// Each kind of exit and how many there were, in order of first appearance.
    kinds: Vec<(Exit, usize)>,
    /// Exits of kinds after the first [`Trace::KINDS`].
    other_kinds: usize,
    /// Exits after the first [`Trace::RUNS`] runs: counted, not kept.
    not_kept: usize,
}

/// Exits of one kind in a row: the first `SHOWN + 1` of them, and how many.
#[derive(Debug)]
struct Run {
    kept: Vec<(Exit, Option<String>)>,
    count: usize,
}

impl Trace {
    pub const SHOWN: usize = 3;
    /// The runs of exits a trace keeps; after them it only counts.
    pub const RUNS: usize = 100;
    /// The kinds the summary names; the rest it counts together.
    pub const KINDS: usize = 16;
    /// The longest note kept, in characters; a longer one is cut, with `...`.
    pub const NOTE: usize = 160;

    pub fn push(&mut self, exit: &Exit) {
        let known = self.kinds.len();
        match self.kinds.iter_mut().find(|(k, _)| k.same_kind(exit)) {
            Some((_, n)) => *n += 1,
            None if known < Self::KINDS => self.kinds.push((exit.clone(), 1)),
            None => self.other_kinds += 1,
        }
        if self.not_kept > 0 {
            self.not_kept += 1;
            return;
        }
        let runs = self.runs.len();
        match self.runs.last_mut() {
            Some(run) if run.kept[0].0.same_kind(exit) => {
                run.count += 1;
                if run.kept.len() <= Self::SHOWN {
                    run.kept.push((exit.clone(), None));
                }
            }
            _ if runs < Self::RUNS => self.runs.push(Run {
                kept: vec![(exit.clone(), None)],
                count: 1,
            }),
            _ => self.not_kept += 1,
        }
    }

    /// Say what the host did about the last exit (kept only if that exit is).
    pub fn note(&mut self, note: impl Into<String>) {
        if self.not_kept > 0 {
            return;
        }
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        if run.count != run.kept.len() {
            return;
        }
        let mut note = note.into();
        if let Some((cut, _)) = note.char_indices().nth(Self::NOTE) {
            note.truncate(cut);
            note += "...";
        }
        if let Some(last) = run.kept.last_mut() {
            last.1 = Some(note);
        }
    }

    /// How many exits, kept or not.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(|(_, n)| n).sum::<usize>() + self.other_kinds
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many exits are kept whole (for the tests: at most `RUNS * (SHOWN + 1)`).
    pub fn kept(&self) -> usize {
        self.runs.iter().map(|r| r.kept.len()).sum()
    }

    /// `exits: 22 x IO out port 0x3f8, 1 x HLT`: each kind with its count, in order of
    /// first appearance.
    pub fn summary(&self) -> String {
        let mut summary = String::from("exits: ");
        for (i, (exit, n)) in self.kinds.iter().enumerate() {
            let comma = if i == 0 { "" } else { ", " };
            let _ = write!(summary, "{comma}{n} x {}", Kind(exit));
        }
        if self.other_kinds > 0 {
            let _ = write!(summary, ", {} x other kinds", self.other_kinds);
        }
        summary
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit trace:")?;
        let mut i = 0;
        for run in &self.runs {
            let first = &run.kept[0].0;
            let shown = if run.count > Self::SHOWN + 1 {
                Self::SHOWN
            } else {
                run.count
            };
            for (k, (exit, note)) in run.kept[..shown].iter().enumerate() {
                write!(f, "  {:>4}  {exit}", i + k + 1)?;
                match note {
                    Some(note) => writeln!(f, "  => {note}")?,
                    None => writeln!(f)?,
                }
            }
            if run.count > shown {
                writeln!(f, "        ... {} more {}", run.count - shown, Kind(first))?;
            }
            i += run.count;
        }
        if self.not_kept > 0 {
            writeln!(f, "        ... and {} more exits, not kept", self.not_kept)?;
        }
        writeln!(f, "{}", self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_shortens_runs_and_counts_kinds() {
        let mut trace = Trace::default();
        for b in b"Hello" {
            trace.push(&Exit::IoOut {
                port: 0x3f8,
                size: 1,
                value: u32::from(*b),
            });
        }
        trace.push(&Exit::MmioRead {
            addr: 0x1000_0000,
            len: 4,
        });
        trace.note("answered 42");
        trace.push(&Exit::Hlt);
        insta::assert_snapshot!("trace", trace.to_string());
    }

    /// A guest that exits without end costs a count: the trace keeps the first few
    /// exits of its first runs, and cuts long notes.
    #[test]
    fn trace_keeps_a_bounded_part_of_a_long_run() {
        let mut trace = Trace::default();
        for i in 0..200_000u32 {
            let port = if i % 2 == 0 {
                0x500
            } else {
                0x500 + (i % 40) as u16
            };
            trace.push(&Exit::IoOut {
                port,
                size: 4,
                value: i,
            });
            trace.note("x".repeat(10_000));
        }
        assert_eq!(trace.len(), 200_000);
        assert!(trace.kept() <= Trace::RUNS * (Trace::SHOWN + 1));
        let text = trace.to_string();
        assert!(text.len() < 64 << 10, "{} bytes", text.len());
        assert!(text.contains("more exits, not kept"), "{text}");
        assert!(text.contains("x other kinds"), "{text}");
        assert!(text.contains(&format!("{}...", "x".repeat(Trace::NOTE))));
    }
}
