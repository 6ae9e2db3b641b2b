//! cgroup v2's "no internal processes" rule, and how a runtime gets controllers for
//! its box anyway.

use super::{Hierarchy, box_name, remove_dir};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// What the runtime changed to let a v2 box use controllers, so it can be undone.
#[derive(Debug, Default)]
pub struct Delegation {
    /// Controllers we enabled in the parent's `cgroup.subtree_control`.
    pub enabled: Vec<String>,
    /// The leaf cgroup the runtime moved itself into, to empty its own cgroup.
    pub leaf: Option<PathBuf>,
    parent: PathBuf,
    runtime: u32,
}

/// On cgroup v2 a cgroup can use a controller only if its parent lists it in
/// `cgroup.subtree_control`, and a parent (other than the root) may list any only
/// while it holds no process of its own: the "no internal processes" rule. The
/// box's parent is the runtime's own cgroup, which holds the runtime. The way out,
/// as nsjail and the docker-in-docker entry point take it: if the runtime is alone
/// in its cgroup (as under `systemd-run --scope -p Delegate=yes`), it moves itself
/// into a leaf of its own and then enables the controllers. If others share it, the
/// runtime says what to run instead of touching cgroups that are not its own.
pub fn delegate(h: &Hierarchy, needed: &[&str], runtime: u32) -> Result<Delegation> {
    let parent = h.own_dir.clone();
    let mut done = Delegation {
        parent: parent.clone(),
        runtime,
        ..Default::default()
    };
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return Ok(done);
    }
    if let Some(c) = missing.iter().find(|c| !h.has(c)) {
        anyhow::bail!(
            "cgroup v2: the {c} controller is not offered to this runtime's cgroup {} (not in its cgroup.controllers): leave out the limit that needs it, or run from a cgroup that has it (`cargo run -- doctor` shows the layout)",
            parent.display()
        );
    }
    let plus: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if parent == h.mount_point {
        anyhow::bail!(
            "cgroup v2: the root cgroup does not enable {} for its children: run `echo '{}' > {}`",
            missing.join(", "),
            plus.join(" "),
            parent.join("cgroup.subtree_control").display()
        );
    }
    let procs = fs::read_to_string(parent.join("cgroup.procs"))
        .with_context(|| format!("reading {}", parent.join("cgroup.procs").display()))?;
    let others = procs
        .lines()
        .filter(|l| l.trim() != runtime.to_string())
        .count();
    if others > 0 {
        anyhow::bail!(
            "cgroup v2: this runtime's cgroup {} also holds {others} other process(es), so it cannot hand {} to a child cgroup (the no-internal-processes rule): run the step in a cgroup of its own, `sudo systemd-run --scope -p Delegate=yes --quiet <the same command>`",
            parent.display(),
            missing.join(", ")
        );
    }
    let leaf = parent.join(format!("{}-runtime", box_name(runtime)));
    fs::create_dir(&leaf).with_context(|| format!("mkdir({})", leaf.display()))?;
    done.leaf = Some(leaf.clone());
    let delegated = fs::write(leaf.join("cgroup.procs"), runtime.to_string())
        .with_context(|| format!("moving the runtime into {}", leaf.display()))
        .and_then(|()| {
            fs::write(parent.join("cgroup.subtree_control"), plus.join(" ")).with_context(|| {
                format!(
                    "writing '{}' to {}/cgroup.subtree_control",
                    plus.join(" "),
                    parent.display()
                )
            })
        });
    if let Err(e) = delegated {
        // Half done: put the runtime back where it was and remove the leaf.
        return Err(match done.undo() {
            Ok(()) => e,
            Err(undo) => e.context(format!("and undoing it failed too: {undo:#}")),
        });
    }
    done.enabled = missing.iter().map(|c| c.to_string()).collect();
    Ok(done)
}

impl Delegation {
    /// Put things back: disable what we enabled, move the runtime back, remove the leaf.
    pub fn undo(&self) -> Result<()> {
        let Some(leaf) = &self.leaf else {
            return Ok(());
        };
        if !self.enabled.is_empty() {
            let minus: Vec<String> = self.enabled.iter().map(|c| format!("-{c}")).collect();
            fs::write(self.parent.join("cgroup.subtree_control"), minus.join(" ")).with_context(
                || {
                    format!(
                        "writing '{}' to {}/cgroup.subtree_control",
                        minus.join(" "),
                        self.parent.display()
                    )
                },
            )?;
        }
        fs::write(self.parent.join("cgroup.procs"), self.runtime.to_string())
            .with_context(|| format!("moving the runtime back to {}", self.parent.display()))?;
        remove_dir(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup::Version;

    /// A fake v2 hierarchy: a mount point with the runtime's own cgroup below it.
    fn fake(procs: &str, subtree: &str) -> (tempfile::TempDir, Hierarchy) {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("user.slice/run-1.scope");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.procs"), procs).unwrap();
        fs::write(own.join("cgroup.subtree_control"), subtree).unwrap();
        let h = Hierarchy {
            version: Version::V2,
            mount_point: root.path().to_path_buf(),
            controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
            own_dir: own,
        };
        (root, h)
    }

    #[test]
    fn a_runtime_alone_in_its_cgroup_moves_into_a_leaf_and_enables_controllers() {
        let (_root, h) = fake("4711\n", "");
        let done = delegate(&h, &["memory", "pids"], 4711).unwrap();
        let leaf = h.own_dir.join("isolab-4711-runtime");
        assert_eq!(done.leaf.as_deref(), Some(leaf.as_path()));
        assert_eq!(
            fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
            "4711"
        );
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // A real kernel would have moved 4711 out; the fake file still lists it.
        fs::remove_file(leaf.join("cgroup.procs")).unwrap();
        done.undo().unwrap();
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.subtree_control")).unwrap(),
            "-memory -pids"
        );
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.procs")).unwrap(),
            "4711"
        );
        assert!(!leaf.exists());
    }

    /// A delegation that fails halfway puts the runtime back in its own cgroup.
    #[test]
    fn a_delegation_that_fails_halfway_moves_the_runtime_back() {
        let (_root, h) = fake("4711\n", "");
        // The kernel would refuse the write; here a directory stands in the file's way.
        fs::remove_file(h.own_dir.join("cgroup.subtree_control")).unwrap();
        fs::create_dir(h.own_dir.join("cgroup.subtree_control")).unwrap();
        let err = delegate(&h, &["memory"], 4711).unwrap_err();
        assert!(
            format!("{err:#}").contains("cgroup.subtree_control"),
            "{err:#}"
        );
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.procs")).unwrap(),
            "4711",
            "the runtime was written back into its own cgroup"
        );
    }

    #[test]
    fn controllers_already_enabled_need_nothing() {
        let (_root, h) = fake("4711\n", "cpu memory pids");
        let done = delegate(&h, &["memory"], 4711).unwrap();
        assert!(done.leaf.is_none() && done.enabled.is_empty());
    }

    #[test]
    fn a_cgroup_shared_with_other_processes_is_refused_with_the_remedy() {
        let (_root, h) = fake("4711\n812\n", "");
        let err = delegate(&h, &["memory"], 4711).unwrap_err().to_string();
        assert!(err.contains("also holds 1 other process"), "{err}");
        assert!(err.contains("systemd-run --scope -p Delegate=yes"), "{err}");
    }

    #[test]
    fn a_controller_not_offered_is_refused() {
        let (_root, mut h) = fake("4711\n", "");
        h.controllers = vec!["pids".into()];
        let err = delegate(&h, &["memory"], 4711).unwrap_err().to_string();
        assert!(
            err.contains("the memory controller is not offered"),
            "{err}"
        );
    }
}
