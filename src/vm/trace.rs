//! The exits of one run, in order, as the KVM steps print them.

use super::Exit;
use super::exit::Kind;
use std::fmt::{self, Write as _};

/// The exits of one run, in order, each with an optional note on what the host did
/// about it. Printed compactly: a run of the same kind shows its first
/// [`Trace::SHOWN`] exits in full, then a count.
#[derive(Debug, Default)]
pub struct Trace {
    exits: Vec<(Exit, Option<String>)>,
}

impl Trace {
    pub const SHOWN: usize = 3;

    pub fn push(&mut self, exit: &Exit) {
        self.exits.push((exit.clone(), None));
    }

    /// Say what the host did about the last exit.
    pub fn note(&mut self, note: impl Into<String>) {
        if let Some(last) = self.exits.last_mut() {
            last.1 = Some(note.into());
        }
    }

    pub fn len(&self) -> usize {
        self.exits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exits.is_empty()
    }

    /// `exits: 22 x IO out port 0x3f8, 1 x HLT`: each kind with its count, in order of
    /// first appearance.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(&Exit, usize)> = Vec::new();
        for (exit, _) in &self.exits {
            match counts.iter_mut().find(|(k, _)| k.same_kind(exit)) {
                Some((_, n)) => *n += 1,
                None => counts.push((exit, 1)),
            }
        }
        let mut summary = String::from("exits: ");
        for (i, (exit, n)) in counts.iter().enumerate() {
            let comma = if i == 0 { "" } else { ", " };
            let _ = write!(summary, "{comma}{n} x {}", Kind(exit));
        }
        summary
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit trace:")?;
        let mut i = 0;
        while i < self.exits.len() {
            let first = &self.exits[i].0;
            let same = self.exits[i..]
                .iter()
                .take_while(|(e, _)| e.same_kind(first))
                .count();
            let shown = if same > Self::SHOWN + 1 {
                Self::SHOWN
            } else {
                same
            };
            for (k, (exit, note)) in self.exits[i..i + shown].iter().enumerate() {
                write!(f, "  {:>4}  {exit}", i + k + 1)?;
                match note {
                    Some(note) => writeln!(f, "  => {note}")?,
                    None => writeln!(f)?,
                }
            }
            if same > shown {
                writeln!(f, "        ... {} more {}", same - shown, Kind(first))?;
            }
            i += same;
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
}
