//! Removing the box's cgroups, and what a runtime killed with SIGKILL left behind.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Remove what earlier runtimes left behind in `dir`: an `isolab-PID` cgroup (or
/// `isolab-PID-runtime` leaf) whose runtime is no longer alive, after killing
/// anything still in it. Only our own names are touched.
pub fn sweep_stale(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("isolab-") else {
            continue;
        };
        let Ok(pid) = rest.trim_end_matches("-runtime").parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its runtime is still running: not ours to touch
        }
        let path = entry.path();
        kill_all(&path);
        if remove_dir(&path).is_ok() {
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Kill every process in a cgroup: with `cgroup.kill` where the kernel has it (v2,
/// 5.14 and later), else one by one from `cgroup.procs`.
pub fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// rmdir a cgroup, and first every cgroup below it: a box whose root may write its
/// cgroup filesystem (step 06's, through a namespace of its own) may have made
/// some, and a cgroup with children cannot go. The kernel says EBUSY while
/// processes are left in one: then kill them, and retry for up to a second while
/// they finish exiting.
pub fn remove_dir(dir: &Path) -> Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&entry.path())?;
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                kill_all(dir);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e).with_context(|| format!("rmdir({})", dir.display())),
        }
    }
}
