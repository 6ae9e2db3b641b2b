//! The tour's scorecard: which walls exist at each step, read from probe reports.

use crate::workshop::report::{Jail, Key, Report};

/// One wall: a row of the scorecard, the report lines it reads, and how it reads
/// them. A report without one of those lines shows `?`, never a wall that stands.
pub struct Wall {
    pub name: &'static str,
    pub keys: &'static [Key],
    /// The cell, from the values of `keys`, in that order.
    pub cell: fn(&[&str]) -> &'static str,
}

impl Wall {
    /// This wall's cell for one report.
    pub fn cell(&self, report: &Report) -> &'static str {
        let values: Option<Vec<&str>> = self.keys.iter().map(|k| report.get(*k)).collect();
        match values {
            Some(values) => (self.cell)(&values),
            None => "?",
        }
    }
}

fn yes_if(holds: bool) -> &'static str {
    if holds { "yes" } else { "no" }
}

/// A route to the canary: READABLE, no route at all, or blocked.
fn blocked(value: &str) -> &'static str {
    if value.starts_with("READABLE") {
        "no"
    } else if value.starts_with("no route") {
        "none"
    } else {
        "yes"
    }
}

/// A limit: set, none, or invisible from inside.
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

/// The entries of a fresh rootfs's `/`, as the probe lists them.
pub const ROOTFS_ENTRIES: &str = "bin dev etc lib lib64 proc sys tmp";

pub const WALLS: &[Wall] = &[
    Wall {
        name: "/ is the rootfs",
        keys: &[Key::Root],
        cell: |v| yes_if(v[0] == ROOTFS_ENTRIES),
    },
    Wall {
        name: "canary hidden by path",
        keys: &[Key::CanaryByPath],
        cell: |v| blocked(v[0]),
    },
    Wall {
        name: "chroot escape blocked",
        keys: &[Key::CanaryViaChrootEscape],
        cell: |v| blocked(v[0]),
    },
    Wall {
        name: "/proc/*/root blocked",
        keys: &[Key::CanaryViaProcRoot],
        cell: |v| blocked(v[0]),
    },
    // The tour always hands the runtime a directory on fd 3: if the probe found no
    // directory descriptor, the runtime closed it.
    Wall {
        name: "leaked fd blocked",
        keys: &[Key::CanaryViaInheritedFd],
        cell: |v| yes_if(!v[0].starts_with("READABLE")),
    },
    Wall {
        name: "own hostname",
        keys: &[Key::Hostname],
        cell: |v| yes_if(v[0] == "isolab"),
    },
    Wall {
        name: "own PID numbers",
        keys: &[Key::Pid],
        cell: |v| yes_if(matches!(v[0], "1" | "2")),
    },
    Wall {
        name: "host processes hidden",
        keys: &[Key::Processes],
        cell: |v| match v[0] {
            p if p.contains("too many") => "no",
            p if p.contains("not mounted") => "no /proc",
            _ => "yes",
        },
    },
    // A mount table of its own has the rootfs mounted at "/". A chroot sees only the
    // mounts below its root, and the host's "/" is not among them.
    Wall {
        name: "own mount table",
        keys: &[Key::Mounts, Key::Root],
        cell: |v| match v[0] {
            m if m.contains("not mounted") => "no /proc",
            m => yes_if(m.contains("(/ ") && v[1] == ROOTFS_ENTRIES),
        },
    },
    Wall {
        name: "memory limit",
        keys: &[Key::MemoryLimit],
        cell: |v| set(v[0]),
    },
    Wall {
        name: "pids limit",
        keys: &[Key::PidsLimit],
        cell: |v| set(v[0]),
    },
    Wall {
        name: "cpu limit",
        keys: &[Key::CpuLimit],
        cell: |v| set(v[0]),
    },
    Wall {
        name: "capabilities reduced",
        keys: &[Key::Capabilities],
        cell: |v| yes_if(!v[0].starts_with("all")),
    },
    // Root in the box mapped to someone else on the host: a user namespace (step 06).
    Wall {
        name: "box root not host root",
        keys: &[Key::UidOnTheHost],
        cell: |v| match v[0] {
            v if v.starts_with("unknown") => "no /proc",
            v => yes_if(!v.starts_with("the same")),
        },
    },
    Wall {
        name: "no_new_privs",
        keys: &[Key::NoNewPrivs],
        cell: |v| yes_if(v[0].starts_with("on")),
    },
    Wall {
        name: "seccomp filter",
        keys: &[Key::Seccomp],
        cell: |v| yes_if(v[0] == "filter"),
    },
    Wall {
        name: "mount refused",
        keys: &[Key::MountAFilesystem],
        cell: |v| refused(v[0]),
    },
    Wall {
        name: "reboot refused",
        keys: &[Key::Reboot],
        cell: |v| refused(v[0]),
    },
    Wall {
        name: "only loopback",
        keys: &[Key::Network],
        cell: |v| yes_if(v[0].starts_with("lo (up)") && !v[0].contains(',')),
    },
    Wall {
        name: "vsock refused",
        keys: &[Key::VsockSocket],
        cell: |v| match v[0] {
            v if v.starts_with("impossible") => "none",
            v => refused(v),
        },
    },
    Wall {
        name: "io_uring refused",
        keys: &[Key::IoUring],
        cell: |v| refused(v[0]),
    },
    Wall {
        name: "ASLR stays on",
        keys: &[Key::TurnOffAslr],
        cell: |v| refused(v[0]),
    },
    Wall {
        name: "environment kept out",
        keys: &[Key::CanaryViaEnvironment],
        cell: |v| blocked(v[0]),
    },
    Wall {
        name: "keyring kept out",
        keys: &[Key::CanaryViaSessionKeyring],
        cell: |v| match v[0] {
            v if v.starts_with("impossible") => "none",
            v => blocked(v),
        },
    },
    // The tour starts a key of the caller's in a session no box holds, and tells
    // the probe its serial number.
    Wall {
        name: "keys by serial refused",
        keys: &[Key::CanaryByKeySerial],
        cell: |v| match v[0] {
            v if v.starts_with("impossible") => "none",
            v if v.starts_with("not checked") => "-",
            v => blocked(v),
        },
    },
    Wall {
        name: "host settings read-only",
        keys: &[Key::ChangeAKernelSetting],
        cell: |v| through_proc(v[0]),
    },
    Wall {
        name: "kernel tables hidden",
        keys: &[Key::ReadTheKernelsTables],
        cell: |v| through_proc(v[0]),
    },
    // The tour hands every runtime a terminal on stdin, as a shell would: a box that
    // finds none on its fds 0-2 was given pipes instead.
    Wall {
        name: "caller's terminal kept out",
        keys: &[Key::TypeIntoMyTerminal],
        cell: |v| match v[0] {
            v if v.starts_with("no terminal") => "yes",
            v => refused(v),
        },
    },
    Wall {
        name: "setuid planting refused",
        keys: &[Key::PlantASetuidFile],
        cell: |v| planted(v[0]),
    },
    Wall {
        name: "device nodes refused",
        keys: &[Key::PlantADeviceNode],
        cell: |v| planted(v[0]),
    },
];

/// Render the scorecard: one column per step, one row per wall.
pub fn render(columns: &[(String, Report)], colour: bool) -> String {
    let width = WALLS.iter().map(|w| w.name.len()).max().unwrap_or(0);
    // As wide as the widest heading or cell, so every column lines up.
    let cells = columns
        .iter()
        .flat_map(|(_, report)| WALLS.iter().map(move |w| w.cell(report).len()));
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
            let cell = wall.cell(report);
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
    /// What a jailed VMM saw of its jail (step 09's `## the jail` lines); `None` for
    /// a VMM that runs as a plain process and prints no such section.
    pub jail: Option<Report>,
}

/// A row of the VM table: its name, and its cell for a VMM in a jail (a VMM without
/// one shows `-` in the rows that read the jail).
type JailRow = (&'static str, Jail, fn(&str) -> &'static str);

/// The walls around a jailed VMM, each read from a line of its jail section.
const JAIL_ROWS: &[JailRow] = &[
    ("VMM's root holds only /dev/kvm", Jail::Dev, |v| {
        yes_if(v == "kvm")
    }),
    ("VMM sees only its own PIDs", Jail::Processes, |v| {
        yes_if(v.starts_with("2 "))
    }),
    ("VMM runs as nobody", Jail::User, |v| {
        yes_if(v.starts_with("65534"))
    }),
    ("VMM has no capabilities", Jail::Capabilities, |v| {
        yes_if(v.starts_with("none"))
    }),
    ("VMM has no network", Jail::Network, |v| {
        yes_if(v == "lo (down)")
    }),
    ("caller's environment wiped", Jail::Environment, |v| {
        yes_if(v.starts_with("empty"))
    }),
    ("caller's terminal kept out", Jail::Stdout, |v| {
        yes_if(v.starts_with("a pipe"))
    }),
    ("caller's session keyring left", Jail::SessionKeyring, |v| {
        yes_if(v.starts_with("not found"))
    }),
    ("seccomp allow-list", Jail::Seccomp, |v| {
        yes_if(v.starts_with("allow-list"))
    }),
];

impl GuestSummary {
    /// The tour's rows for the KVM steps: one column per step.
    pub fn render(columns: &[(String, Option<GuestSummary>)]) -> String {
        let width = columns.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
        let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
        let cells = |cell: &dyn Fn(&GuestSummary) -> String| -> Vec<String> {
            columns
                .iter()
                .map(|(_, s)| s.as_ref().map(cell).unwrap_or_else(|| "?".into()))
                .collect()
        };
        rows.push(("own kernel code", cells(&|_| "yes".into())));
        rows.push(("exits handled by the host", cells(&|s| s.exits.to_string())));
        for (name, key, cell) in JAIL_ROWS {
            rows.push((
                name,
                cells(&|s| match &s.jail {
                    None => "-".into(),
                    Some(jail) => jail.get(*key).map_or("?", cell).into(),
                }),
            ));
        }
        let label = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!("{:label$}", "");
        for (heading, _) in columns {
            out += &format!("  {heading:>width$}");
        }
        out.push('\n');
        for (name, values) in rows {
            out += &format!("{name:label$}");
            for value in values {
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
        let jail = stdout
            .lines()
            .any(|l| l.starts_with("## the jail"))
            .then(|| Report::parse(stdout));
        Some(GuestSummary { said, exits, jail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tour_rows() {
        let summary = |exits, jail: Option<&str>| {
            Some(GuestSummary {
                said: String::new(),
                exits,
                jail: jail.map(Report::parse),
            })
        };
        let jail = "user: 65534 (nobody), in no group\nroot: dev\n/dev: kvm\n\
                    processes: 2 (the PIDs kill(pid, 0) finds from 1 to 1024: 1 2)\n\
                    capabilities: none (and the bounding set is empty)\nnetwork: lo (down)\n\
                    environment: empty (wiped)\nstdout: a pipe, write-only\n\
                    session keyring: not found (the session keyring I hold is not the \
                    caller's)\nseccomp: allow-list of 10 system calls\n";
        let columns = [
            ("07-kvm-real-mode".to_string(), summary(23, None)),
            ("08-kvm-long-mode".to_string(), summary(5, None)),
            ("09-jailed-vm".to_string(), summary(2, Some(jail))),
            ("09, silent".to_string(), summary(2, Some(""))),
        ];
        insta::assert_snapshot!("tour_rows", GuestSummary::render(&columns));
    }

    #[test]
    fn a_report_without_a_wall_s_line_shows_a_question_mark_never_yes() {
        let report = Report::parse("root: bin dev etc lib lib64 proc sys tmp\n");
        let cells: Vec<&str> = WALLS.iter().map(|w| w.cell(&report)).collect();
        assert_eq!(cells[0], "yes", "the one line it has");
        assert!(cells[1..].iter().all(|c| *c == "?"), "{cells:?}");
    }

    #[test]
    fn a_guest_summary_is_read_back_from_a_steps_output() {
        let out = "guest said: Hello\nexit trace:\nexits: 5 x IO out port 0x3f8, 1 x MMIO read 0x10000000, 1 x HLT\n";
        assert_eq!(
            GuestSummary::parse(out),
            Some(GuestSummary {
                said: "Hello".into(),
                exits: 7,
                jail: None,
            })
        );
    }
}
