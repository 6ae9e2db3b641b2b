//! The tour's scorecard: which walls exist at each step, read from probe reports.

use crate::workshop::report::Report;

/// One wall: a row of the scorecard, and how to read it off a report.
pub struct Wall {
    pub name: &'static str,
    pub cell: fn(&Report) -> &'static str,
}

fn yes_if(holds: bool) -> &'static str {
    if holds { "yes" } else { "no" }
}

fn blocked(value: &str) -> &'static str {
    if value.starts_with("READABLE") {
        "no"
    } else if value.starts_with("no route") {
        "none"
    } else {
        "yes"
    }
}

fn set(value: &str) -> &'static str {
    match value {
        "none" => "no",
        v if v.starts_with("not visible") || v.starts_with("unreadable") => "?",
        _ => "yes",
    }
}

fn refused(value: &str) -> &'static str {
    yes_if(value.starts_with("refused"))
}

/// The entries of a fresh rootfs's `/`, as the probe lists them.
pub const ROOTFS_ENTRIES: &str = "bin dev etc lib lib64 proc sys tmp";

pub const WALLS: &[Wall] = &[
    Wall {
        name: "/ is the rootfs",
        cell: |r| yes_if(r.get("root") == ROOTFS_ENTRIES),
    },
    Wall {
        name: "canary hidden by path",
        cell: |r| blocked(r.get("canary by path")),
    },
    Wall {
        name: "chroot escape blocked",
        cell: |r| blocked(r.get("canary via chroot escape")),
    },
    Wall {
        name: "/proc/*/root blocked",
        cell: |r| blocked(r.get("canary via /proc/*/root")),
    },
    // The tour always hands the runtime a directory on fd 3: if the probe found no
    // directory descriptor, the runtime closed it.
    Wall {
        name: "leaked fd blocked",
        cell: |r| yes_if(!r.get("canary via inherited fd").starts_with("READABLE")),
    },
    Wall {
        name: "own hostname",
        cell: |r| yes_if(r.get("hostname") == "isolab"),
    },
    Wall {
        name: "own PID numbers",
        cell: |r| yes_if(matches!(r.get("pid"), "1" | "2")),
    },
    Wall {
        name: "host processes hidden",
        cell: |r| match r.get("processes") {
            p if p.contains("too many") => "no",
            p if p.contains("not mounted") => "no /proc",
            _ => "yes",
        },
    },
    // A mount table of its own has the rootfs mounted at "/". A chroot sees only the
    // mounts below its root, and the host's "/" is not among them.
    Wall {
        name: "own mount table",
        cell: |r| match r.get("mounts") {
            m if m.contains("not mounted") => "no /proc",
            m => yes_if(m.contains("(/ ") && r.get("root") == ROOTFS_ENTRIES),
        },
    },
    Wall {
        name: "memory limit",
        cell: |r| set(r.get("memory limit")),
    },
    Wall {
        name: "pids limit",
        cell: |r| set(r.get("pids limit")),
    },
    Wall {
        name: "cpu limit",
        cell: |r| set(r.get("cpu limit")),
    },
    Wall {
        name: "capabilities reduced",
        cell: |r| yes_if(!r.get("capabilities").starts_with("all")),
    },
    Wall {
        name: "no_new_privs",
        cell: |r| yes_if(r.get("no_new_privs").starts_with("on")),
    },
    Wall {
        name: "seccomp filter",
        cell: |r| yes_if(r.get("seccomp") == "filter"),
    },
    Wall {
        name: "mount refused",
        cell: |r| refused(r.get("mount a filesystem")),
    },
    Wall {
        name: "reboot refused",
        cell: |r| refused(r.get("reboot")),
    },
    Wall {
        name: "only loopback",
        cell: |r| {
            yes_if(r.get("network").starts_with("lo (up)") && !r.get("network").contains(','))
        },
    },
    Wall {
        name: "vsock refused",
        cell: |r| match r.get("vsock socket") {
            v if v.starts_with("impossible") => "none",
            v => refused(v),
        },
    },
    Wall {
        name: "io_uring refused",
        cell: |r| refused(r.get("io_uring")),
    },
    Wall {
        name: "ASLR stays on",
        cell: |r| refused(r.get("turn off ASLR")),
    },
    Wall {
        name: "environment kept out",
        cell: |r| blocked(r.get("canary via environment")),
    },
    Wall {
        name: "host settings read-only",
        cell: |r| through_proc(r.get("change a kernel setting")),
    },
    Wall {
        name: "kernel tables hidden",
        cell: |r| through_proc(r.get("read the kernel's tables")),
    },
    // Only when the tour runs in a terminal: otherwise there is none to type into.
    Wall {
        name: "terminal typing refused",
        cell: |r| match r.get("type into my terminal") {
            v if v.starts_with("no terminal") => "-",
            v => refused(v),
        },
    },
    Wall {
        name: "setuid planting refused",
        cell: |r| planted(r.get("plant a setuid file")),
    },
    Wall {
        name: "device nodes refused",
        cell: |r| planted(r.get("plant a device node")),
    },
];

/// A route through /proc: open ("WRITABLE", "READABLE"), closed, or no /proc at all.
fn through_proc(value: &str) -> &'static str {
    match value {
        v if v.starts_with("no /proc") => "no /proc",
        v => yes_if(!v.starts_with("WRITABLE") && !v.starts_with("READABLE")),
    }
}

/// Leaving a file in the rootfs for the host's users: planted, refused, or not tried.
fn planted(value: &str) -> &'static str {
    match value {
        v if v.starts_with("not tried") => "-",
        v => yes_if(!v.starts_with("PLANTED")),
    }
}

/// Render the scorecard: one column per step, one row per wall.
pub fn render(columns: &[(String, Report)], colour: bool) -> String {
    let width = WALLS.iter().map(|w| w.name.len()).max().unwrap_or(0);
    // As wide as the widest heading or cell, so every column lines up.
    let cells = columns
        .iter()
        .flat_map(|(_, report)| WALLS.iter().map(move |w| (w.cell)(report).len()));
    let col = columns
        .iter()
        .map(|(h, _)| h.len())
        .chain(cells)
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:width$}", "wall");
    for (heading, _) in columns {
        out += &format!("  {heading:>col$}");
    }
    out.push('\n');
    for wall in WALLS {
        out += &format!("{:width$}", wall.name);
        for (_, report) in columns {
            let cell = (wall.cell)(report);
            let padded = format!("{cell:>col$}");
            out += "  ";
            out += &match (colour, cell) {
                (true, "yes") => format!("\x1b[32m{padded}\x1b[0m"),
                (true, "no") => format!("\x1b[31m{padded}\x1b[0m"),
                _ => padded,
            };
        }
        out.push('\n');
    }
    out
}

/// What the tour reads back from a KVM step's output: the VM side of the scorecard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSummary {
    /// What the guest printed (`guest said:`).
    pub said: String,
    /// How many exits the host handled (the sum of the `exits:` line).
    pub exits: u32,
}

impl GuestSummary {
    /// The tour's rows for the KVM steps: one column per step.
    pub fn render(columns: &[(String, Option<GuestSummary>)]) -> String {
        let width = columns.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
        type Cell = fn(&GuestSummary) -> String;
        let rows: [(&str, Cell); 2] = [
            ("own kernel code", |_| "yes".into()),
            ("exits handled by the host", |s| s.exits.to_string()),
        ];
        let label = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!("{:label$}", "");
        for (heading, _) in columns {
            out += &format!("  {heading:>width$}");
        }
        out.push('\n');
        for (name, cell) in rows {
            out += &format!("{name:label$}");
            for (_, summary) in columns {
                let value = summary.as_ref().map(cell).unwrap_or_else(|| "?".into());
                out += &format!("  {value:>width$}");
            }
            out.push('\n');
        }
        out
    }

    pub fn parse(stdout: &str) -> Option<GuestSummary> {
        let said = stdout
            .lines()
            .find_map(|l| l.strip_prefix("guest said: "))?
            .to_string();
        let exits = stdout
            .lines()
            .find_map(|l| l.strip_prefix("exits: "))?
            .split(", ")
            .map(|part| part.split(" x ").next()?.parse::<u32>().ok())
            .sum::<Option<u32>>()?;
        Some(GuestSummary { said, exits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tour_rows() {
        let summary = |exits| {
            Some(GuestSummary {
                said: String::new(),
                exits,
            })
        };
        let columns = [
            ("06-kvm-real-mode".to_string(), summary(23)),
            ("07-kvm-long-mode".to_string(), summary(5)),
        ];
        insta::assert_snapshot!("tour_rows", GuestSummary::render(&columns));
    }

    #[test]
    fn a_guest_summary_is_read_back_from_a_steps_output() {
        let out = "guest said: Hello\nexit trace:\nexits: 5 x IO out port 0x3f8, 1 x MMIO read 0x10000000, 1 x HLT\n";
        assert_eq!(
            GuestSummary::parse(out),
            Some(GuestSummary {
                said: "Hello".into(),
                exits: 7
            })
        );
    }
}
