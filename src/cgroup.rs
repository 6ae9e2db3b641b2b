//! How this host lays out its cgroups, read from the kernel's own tables:
//! `/proc/self/mountinfo` says which hierarchies are mounted where (type `cgroup` is
//! v1, one per controller or group of controllers; `cgroup2` is the unified v2
//! hierarchy), and each v2 hierarchy lists its controllers in `cgroup.controllers`.

use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// The layouts a host can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only the unified hierarchy: the common case on current distributions.
    V2,
    /// Only per-controller hierarchies: older distributions.
    V1,
    /// Both: controllers on v1, and a cgroup2 hierarchy (often with none of them).
    Hybrid,
    /// No cgroup filesystem mounted at all.
    None,
}

/// A mounted v1 hierarchy and the controllers bound to it.
#[derive(Debug, Clone)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: Kind,
    pub v1: Vec<V1Hierarchy>,
    /// Where the cgroup2 hierarchy is mounted, and the controllers it offers.
    pub v2: Option<(PathBuf, Vec<String>)>,
}

/// The v1 controllers the runtime uses; other names in the mount options (rw,
/// relatime, name=systemd, ...) are not controllers we care about.
const KNOWN: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
];

impl Layout {
    pub fn detect() -> Result<Layout> {
        let table =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in table.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let point = PathBuf::from(fields[4]);
            match fields.get(dash + 1) {
                Some(&"cgroup2") if v2.is_none() => {
                    let listed =
                        fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
                    v2 = Some((point, listed.split_whitespace().map(String::from).collect()));
                }
                Some(&"cgroup") => {
                    let options = fields.get(dash + 3).copied().unwrap_or("");
                    let controllers: Vec<String> = options
                        .split(',')
                        .filter(|o| KNOWN.contains(o))
                        .map(String::from)
                        .collect();
                    if !controllers.is_empty() {
                        v1.push(V1Hierarchy {
                            mount_point: point,
                            controllers,
                        });
                    }
                }
                _ => {}
            }
        }
        let kind = match (v1.is_empty(), v2.is_some()) {
            (true, true) => Kind::V2,
            (false, false) => Kind::V1,
            (false, true) => Kind::Hybrid,
            (true, false) => Kind::None,
        };
        Ok(Layout { kind, v1, v2 })
    }

    /// Where `controller` lives: its v1 hierarchy, or the v2 hierarchy if offered there.
    pub fn place_of(&self, controller: &str) -> Option<String> {
        if let Some(h) = self
            .v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
        {
            return Some(format!("v1 at {}", h.mount_point.display()));
        }
        match &self.v2 {
            Some((point, list)) if list.iter().any(|c| c == controller) => {
                Some(format!("v2 at {}", point.display()))
            }
            _ => None,
        }
    }
}
