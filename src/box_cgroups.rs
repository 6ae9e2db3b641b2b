//! The box cgroups of step 04, finished, for step 05 to build on. Step 04's own
//! file has its own copy, with the lines the learner writes.

use crate::cgroup::{
    Delegation, Hierarchy, Layout, Version, box_name, delegate, remove_dir, sweep_stale,
};
use crate::cli::{Cpus, LimitArgs};
use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use std::fs;
use std::path::PathBuf;
/// The box's cgroup in one hierarchy: a directory we created.
pub struct BoxDir {
    pub version: Version,
    pub path: PathBuf,
    /// The controllers this hierarchy holds (v1), or offers the box (v2).
    pub controllers: Vec<String>,
}

/// The box's cgroups, one per hierarchy, and what we changed to get them.
pub struct BoxCgroups {
    pub dirs: Vec<BoxDir>,
    delegation: Option<Delegation>,
}

impl BoxCgroups {
    /// Make the box's cgroup in every hierarchy, under the runtime's own cgroup,
    /// and write the limits into the hierarchy that holds each controller.
    pub fn create(limits: &LimitArgs) -> Result<BoxCgroups> {
        let hierarchies = Layout::detect()?.for_box()?;
        need_controllers(&hierarchies, limits)?;
        let name = box_name(std::process::id());
        let mut cgroups = BoxCgroups {
            dirs: Vec::new(),
            delegation: None,
        };
        for h in &hierarchies {
            // A runtime killed with SIGKILL could not remove its cgroups: do it now.
            sweep_stale(&h.own_dir)?;
            if h.version == Version::V2 {
                let needed: Vec<&str> = needed_controllers(limits)
                    .into_iter()
                    .filter(|c| h.has(c))
                    .collect();
                cgroups.delegation = Some(delegate(h, &needed, std::process::id())?);
            }
            let path = h.own_dir.join(&name);
            fs::create_dir(&path).with_context(|| format!("mkdir({})", path.display()))?;
            let dir = BoxDir {
                version: h.version,
                path,
                controllers: h.controllers.clone(),
            };
            cgroups.dirs.push(dir);
            write_limits(cgroups.dirs.last().expect("just pushed"), limits)?;
        }
        Ok(cgroups)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Put the calling process into the box's cgroup in every hierarchy.
    pub fn join(&self) -> Result<()> {
        for dir in &self.dirs {
            let file = match dir.version {
                Version::V1 => "tasks",
                Version::V2 => "cgroup.procs",
            };
            let path = dir.path.join(file);
            fs::write(&path, "0").with_context(|| format!("write(0, {})", path.display()))?;
        }
        Ok(())
    }

    /// Kill whatever is left in the box's cgroups, remove them, and undo any
    /// delegation. What is removed is forgotten, so a second call does nothing.
    pub fn remove(&mut self) -> Result<()> {
        while let Some(dir) = self.dirs.pop() {
            remove_dir(&dir.path)?;
        }
        if let Some(delegation) = self.delegation.take() {
            delegation.undo()?;
        }
        Ok(())
    }
}

/// A runtime that fails halfway still removes what it created.
impl Drop for BoxCgroups {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!(
                "{}: warning: cleaning up the box's cgroups: {e:#}",
                crate::run::program_name()
            );
        }
    }
}

/// The controllers these limits need.
fn needed_controllers(limits: &LimitArgs) -> Vec<&'static str> {
    let mut needed = Vec::new();
    if limits.memory.is_some() {
        needed.push("memory");
    }
    if limits.pids_limit.is_some() {
        needed.push("pids");
    }
    if limits.cpus.is_some() {
        needed.push("cpu");
    }
    needed
}

/// Fail with one line if a limit needs a controller no hierarchy offers.
fn need_controllers(hierarchies: &[Hierarchy], limits: &LimitArgs) -> Result<()> {
    for controller in needed_controllers(limits) {
        if !hierarchies.iter().any(|h| h.has(controller)) {
            bail!(
                "this host has no {controller} controller for the box's cgroup (see `cargo run -- doctor`): leave out the limit that needs it"
            );
        }
    }
    Ok(())
}

/// The limit files for a cgroup of this `version`, and what to write in each, for
/// the limits that were asked for, in the order to write them.
pub fn limit_files(version: Version, limits: &LimitArgs) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    match version {
        Version::V2 => {
            if let Some(bytes) = limits.memory {
                files.push(("memory.max", bytes.to_string()));
            }
            if let Some(n) = limits.pids_limit {
                files.push(("pids.max", n.to_string()));
            }
            if let Some(Cpus {
                quota_us,
                period_us,
            }) = limits.cpus
            {
                files.push(("cpu.max", format!("{quota_us} {period_us}")));
            }
        }
        Version::V1 => {
            if let Some(bytes) = limits.memory {
                files.push(("memory.limit_in_bytes", bytes.to_string()));
            }
            if let Some(n) = limits.pids_limit {
                files.push(("pids.max", n.to_string()));
            }
            if let Some(Cpus {
                quota_us,
                period_us,
            }) = limits.cpus
            {
                files.push(("cpu.cfs_period_us", period_us.to_string()));
                files.push(("cpu.cfs_quota_us", quota_us.to_string()));
            }
        }
    }
    files
}

/// Write the limits that belong to this directory's hierarchy.
fn write_limits(dir: &BoxDir, limits: &LimitArgs) -> Result<()> {
    for (file, value) in limit_files(dir.version, limits) {
        let controller = file.split('.').next().unwrap_or_default();
        if !dir.controllers.iter().any(|c| c == controller) {
            continue; // another hierarchy holds this controller
        }
        let path = dir.path.join(file);
        fs::write(&path, &value).with_context(|| format!("write({value}, {})", path.display()))?;
    }
    // No swap either: a box over its memory limit must be killed, not paged out.
    if let Some(bytes) = limits.memory {
        for (file, value) in [
            ("memory.swap.max", "0".to_string()),
            ("memory.memsw.limit_in_bytes", bytes.to_string()),
        ] {
            let path = dir.path.join(file);
            if path.exists() {
                fs::write(&path, &value)
                    .with_context(|| format!("write({value}, {})", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Let the box read its own cgroups at /sys/fs/cgroup, read-only, as docker does:
/// inside the cgroup namespace, each hierarchy's root is the box's own cgroup.
pub fn mount_cgroupfs(cgroups: &BoxCgroups) -> Result<()> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mount_at = |source: &str, target: &str, fstype: &str, data: Option<&str>| {
        // The cgroup filesystems themselves read-only; the tmpfs that holds their
        // mount points is made read-only once they are in place.
        let flags = if fstype == "tmpfs" {
            safe
        } else {
            safe | MsFlags::MS_RDONLY
        };
        fs::create_dir_all(target).with_context(|| format!("mkdir -p {target}"))?;
        mount(Some(source), target, Some(fstype), flags, data)
            .with_context(|| format!("mount({source}, {target}, {fstype}, {data:?})"))
    };
    mount_at("tmpfs", "/sys", "tmpfs", Some("mode=755,size=16k"))?;
    let v1: Vec<&BoxDir> = cgroups
        .dirs
        .iter()
        .filter(|d| d.version == Version::V1)
        .collect();
    if v1.is_empty() {
        mount_at("cgroup2", "/sys/fs/cgroup", "cgroup2", None)?;
    } else {
        mount_at(
            "tmpfs",
            "/sys/fs/cgroup",
            "tmpfs",
            Some("mode=755,size=16k"),
        )?;
        for dir in v1 {
            let controllers = dir.controllers.join(",");
            mount_at(
                "cgroup",
                &format!("/sys/fs/cgroup/{controllers}"),
                "cgroup",
                Some(&controllers),
            )?;
        }
        if cgroups.dirs.iter().any(|d| d.version == Version::V2) {
            mount_at("cgroup2", "/sys/fs/cgroup/unified", "cgroup2", None)?;
        }
        crate::container::remount_read_only("/sys/fs/cgroup")?;
    }
    crate::container::remount_read_only("/sys")
}
