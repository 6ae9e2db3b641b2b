//! cgroups, as this host lays them out. The kernel's own tables tell:
//! `/proc/self/mountinfo` says which hierarchies are mounted where (type `cgroup` is
//! v1, one per controller or group of controllers; `cgroup2` is the unified v2
//! hierarchy), and each v2 hierarchy lists its controllers in `cgroup.controllers`.
//! The other files here: [`cleanup`] (sweeping what a killed runtime left, removing a
//! cgroup), [`delegation`] (v2's no-internal-processes rule), [`usage`] (what a box
//! used).

use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

pub mod cleanup;
pub mod delegation;
pub mod usage;

pub use cleanup::{kill_all, remove_dir, sweep_stale};
pub use delegation::{Delegation, delegate};
pub use usage::{Stat, Usage};

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

/// Which cgroup interface a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A hierarchy the box joins, and where the runtime itself sits in it.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub version: Version,
    pub mount_point: PathBuf,
    /// v1: the controllers bound to this hierarchy; v2: the controllers the runtime's
    /// own cgroup offers to its children (its `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// The runtime's own cgroup in this hierarchy, as a directory: the mount point
    /// plus the path the kernel gives in /proc/self/cgroup.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The controllers a box's limits use.
pub const BOX_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

impl Layout {
    /// The hierarchies a box joins: each v1 hierarchy that holds one of
    /// [`BOX_CONTROLLERS`], and the v2 hierarchy when it offers one of them too, or
    /// when it is the only hierarchy (a v2 host). A hybrid host's v2 tree usually
    /// offers no controller, and joining it would cost a `cgroup.procs` write, which
    /// can wait milliseconds for an RCU grace period (step 04's `join` says why).
    /// Each hierarchy costs a mkdir, a join and an rmdir, so the box joins no other:
    /// where no cgroup of its counts CPU time, [`Usage::read`] asks the kernel's
    /// count of the runtime's children instead.
    pub fn for_box(&self) -> Result<Vec<Hierarchy>> {
        let membership =
            fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mut paths: Vec<(Vec<String>, String)> = Vec::new();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            if let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            {
                let list = controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                paths.push((list, path.to_string()));
            }
        }
        let own = |controllers: &[String]| -> Option<String> {
            paths
                .iter()
                .find(|(list, _)| {
                    if controllers.is_empty() {
                        list.is_empty()
                    } else {
                        list.iter().any(|c| controllers.contains(c))
                    }
                })
                .map(|(_, path)| path.clone())
        };
        let v2 = match &self.v2 {
            Some((point, _)) => own(&[]).map(|path| {
                let own_dir = point.join(path.trim_start_matches('/'));
                let offered =
                    fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
                Hierarchy {
                    version: Version::V2,
                    mount_point: point.clone(),
                    controllers: offered.split_whitespace().map(String::from).collect(),
                    own_dir,
                }
            }),
            None => None,
        }
        .filter(|h| self.v1.is_empty() || BOX_CONTROLLERS.iter().any(|c| h.has(c)));
        let mut found = Vec::new();
        for h in &self.v1 {
            if !h
                .controllers
                .iter()
                .any(|c| BOX_CONTROLLERS.contains(&c.as_str()))
            {
                continue;
            }
            let path = own(&h.controllers).with_context(|| {
                format!(
                    "/proc/self/cgroup has no line for {}",
                    h.controllers.join(",")
                )
            })?;
            found.push(Hierarchy {
                version: Version::V1,
                mount_point: h.mount_point.clone(),
                controllers: h.controllers.clone(),
                own_dir: h.mount_point.join(path.trim_start_matches('/')),
            });
        }
        found.extend(v2);
        Ok(found)
    }
}

/// The name of the cgroup a runtime with this PID creates in each hierarchy.
pub fn box_name(runtime: u32) -> String {
    format!("isolab-{runtime}")
}
