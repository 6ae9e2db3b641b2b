//! Removing the box's cgroups, and what a runtime killed with SIGKILL left behind.

use crate::container::tree;
use anyhow::Result;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::CStr;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        match remove_dir(&path) {
            Ok(()) => removed.push(path),
            // Not this run's to fail on; but said, never ignored.
            Err(e) => eprintln!("{}: warning: {e:#}", crate::run::program_name()),
        }
    }
    Ok(removed)
}

/// Kill every process in a cgroup: with `cgroup.kill` where the kernel has it (v2,
/// 5.14 and later), else one by one from `cgroup.procs`.
pub fn kill_all(dir: &Path) {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if let Ok(fd) = openat(AT_FDCWD, dir, flags, Mode::empty()) {
        kill_all_in(fd.as_fd());
    }
}

/// [`kill_all`], in the cgroup whose directory `dir` holds.
fn kill_all_in(dir: BorrowedFd) {
    let open = |name: &str, flags: OFlag| {
        openat(dir, name, flags | OFlag::O_CLOEXEC, Mode::empty()).map(fs::File::from)
    };
    if let Ok(mut kill) = open("cgroup.kill", OFlag::O_WRONLY)
        && kill.write_all(b"1").is_ok()
    {
        return;
    }
    let mut procs = String::new();
    if let Ok(mut file) = open("cgroup.procs", OFlag::O_RDONLY) {
        let _ = file.read_to_string(&mut procs);
    }
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// rmdir a cgroup, and first every cgroup below it, leaves first: a box whose root
/// may write its cgroup filesystem (step 06's, through a namespace of its own) may
/// have made some, as deep as step 06 lets it, and a cgroup with children cannot
/// go. The walk is the toolkit's ([`tree::remove_dirs`]): no recursion, no long
/// paths, and what cannot be removed is named.
pub fn remove_dir(dir: &Path) -> Result<()> {
    tree::remove_dirs(dir, &mut rmdir_emptied)
}

/// rmdir one cgroup that has none below it. The kernel says EBUSY while processes
/// are left in it: then kill them, and retry for up to a second while they finish
/// exiting.
fn rmdir_emptied(parent: BorrowedFd, name: &CStr, cgroup: BorrowedFd) -> nix::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                kill_all_in(cgroup);
                std::thread::sleep(Duration::from_millis(1));
            }
            done => return done,
        }
    }
}
