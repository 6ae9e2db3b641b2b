//! The ranges of subordinate IDs a user may map: `/etc/subuid` and `/etc/subgid`,
//! one `NAME:START:COUNT` (or `UID:START:COUNT`) per line, as `useradd` writes them
//! and `newuidmap`/`newgidmap` check them; writing them into another process's maps
//! with those two programs ([`map_from_outside`], step 06's `--map-range`); and a
//! child of ours that is root over them ([`in_a_mapped_namespace`]), which removes
//! what a box with `--map-range` left (`isolab run`).

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// A range of host IDs handed to one user: `count` IDs from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The first range `file` gives the user `name` (or `uid`), if any.
pub fn find_in(text: &str, name: &str, uid: u32) -> Option<Range> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if who != name && who != uid.to_string() {
            return None;
        }
        Some(Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

/// The range `file` (/etc/subuid or /etc/subgid) gives this user, with at least
/// `needed` IDs in it; otherwise one line that says how to get one.
pub fn range_for(file: &Path, name: &str, uid: u32, needed: u32) -> Result<Range> {
    let remedy =
        format!("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}");
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist, so no user has a range of IDs to map: `{remedy}` gives {name} one",
            file.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let Some(range) = find_in(&text, name, uid) else {
        bail!(
            "{} gives {name} (uid {uid}) no range of IDs to map: `{remedy}` gives it one",
            file.display()
        );
    };
    if range.count < needed {
        bail!(
            "{} gives {name} only {} IDs, and mapping 0-65535 takes {needed}: `{remedy}` gives it enough",
            file.display(),
            range.count
        );
    }
    Ok(range)
}

/// One line of a uid_map or gid_map: `count` IDs from `inside`, in the namespace,
/// are the IDs from `outside` in the namespace above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Write the uid and gid maps of the user namespace process `pid` is in, from
/// outside it. Only a privileged process may map more IDs than its own, so the
/// setuid-root programs newuidmap and newgidmap write them, after checking each
/// line against this user's ranges in /etc/subuid and /etc/subgid.
pub fn map_from_outside(pid: u32, uids: &[MapLine], gids: &[MapLine]) -> Result<()> {
    for (tool, lines) in [("newuidmap", uids), ("newgidmap", gids)] {
        let mut args = vec![pid.to_string()];
        for line in lines {
            args.extend([line.inside, line.outside, line.count].map(|n| n.to_string()));
        }
        let status = std::process::Command::new(tool)
            .args(&args)
            .status()
            .with_context(|| format!("running {tool}"))?;
        if !status.success() {
            bail!("{tool} {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

/// The maps that make the caller root of a user namespace, with its whole ranges
/// from 1 on: `0 UID 1` and `1 START COUNT`. A box with `--map-range` had part of
/// these ranges (step 06 maps 65535 IDs of them), so whatever it left is owned by
/// IDs mapped here, and root here holds every capability over it.
pub fn root_over_my_ranges() -> Result<(Vec<MapLine>, Vec<MapLine>)> {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let uids = range_for(Path::new("/etc/subuid"), &name, uid, 1)?;
    let gids = range_for(Path::new("/etc/subgid"), &name, uid, 1)?;
    let lines = |id: u32, range: Range| {
        vec![
            MapLine {
                inside: 0,
                outside: id,
                count: 1,
            },
            MapLine {
                inside: 1,
                outside: range.start,
                count: range.count,
            },
        ]
    };
    Ok((lines(uid, uids), lines(gid, gids)))
}

/// Run `work` in a child of ours, in a user namespace of its own whose maps we
/// write from outside ([`map_from_outside`]), where it holds every capability over
/// the files of the IDs mapped. It runs `work` and nothing else: no program, and
/// nothing a box left. What `work` fails with is what this fails with.
///
/// Call it only while this process has one thread: the child of a fork runs our
/// code, which allocates.
pub fn in_a_mapped_namespace(
    uids: &[MapLine],
    gids: &[MapLine],
    work: impl FnOnce() -> Result<()>,
) -> Result<()> {
    need_one_thread()?;
    use crate::run::pipe;
    let ((made_r, made_w), (go_r, go_w), (said_r, said_w)) = (pipe()?, pipe()?, pipe()?);
    // SAFETY: this process has one thread (checked above), so the child may run
    // any code.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => {
            drop((made_r, go_w, said_r));
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mapped_child(made_w, go_r)?;
                work()
            }));
            let said = match done {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(_) => Some("the helper panicked".to_string()),
            };
            if let Some(said) = said {
                let _ = std::fs::File::from(said_w).write_all(said.as_bytes());
                // SAFETY: _exit ends the child at once, without running the
                // parent's atexit handlers or flushing its copied buffers.
                unsafe { libc::_exit(1) }
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((made_w, go_r, said_w));
            let mapped = map_child(made_r, child.as_raw() as u32, uids, gids);
            if mapped.is_ok() {
                nix::unistd::write(&go_w, b"!").context("write(pipe)")?;
            }
            // Without a byte first, the child sees the end of the pipe: not mapped.
            drop(go_w);
            let mut said = String::new();
            let _ = std::fs::File::from(said_r).read_to_string(&mut said);
            let status = waitpid(child, None).context("waitpid(helper)")?;
            mapped?;
            match status {
                WaitStatus::Exited(_, 0) => Ok(()),
                _ if !said.is_empty() => bail!("{said}"),
                other => bail!("the helper in a user namespace ended: {other:?}"),
            }
        }
    }
}

/// The child's half: make the user namespace, say so, and wait until the parent
/// has written its maps.
fn mapped_child(made: OwnedFd, go: OwnedFd) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER).context("unshare(CLONE_NEWUSER)")?;
    nix::unistd::write(&made, b"!").context("write(pipe)")?;
    drop(made);
    let mut byte = [0u8; 1];
    if nix::unistd::read(&go, &mut byte).context("read(pipe)")? == 0 {
        bail!("the maps of the helper's user namespace were not written");
    }
    Ok(())
}

/// The parent's half: wait until the child has made its user namespace, then write
/// its maps.
fn map_child(made: OwnedFd, child: u32, uids: &[MapLine], gids: &[MapLine]) -> Result<()> {
    let mut byte = [0u8; 1];
    if nix::unistd::read(&made, &mut byte).context("read(pipe)")? == 0 {
        bail!("the helper ended before it made its user namespace");
    }
    map_from_outside(child, uids, gids)
}

/// Fail unless this process has one thread (/proc/self/status says how many).
fn need_one_thread() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim);
    if threads != Some("1") {
        bail!(
            "a helper is forked only from a process with one thread, and this one has {threads:?}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:65536\n";
        assert_eq!(
            find_in(text, "alice", 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(find_in(text, "bob", 1001).map(|r| r.start), Some(200000));
        assert_eq!(find_in(text, "carol", 1002), None);
    }

    #[test]
    fn a_missing_or_short_range_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        std::fs::write(&file, "alice:100000:1000\n").unwrap();
        let short = range_for(&file, "alice", 1000, 65535)
            .unwrap_err()
            .to_string();
        assert!(short.contains("only 1000 IDs"), "{short}");
        let none = range_for(&file, "bob", 1001, 65535)
            .unwrap_err()
            .to_string();
        assert!(none.contains("no range of IDs"), "{none}");
        assert!(none.contains("usermod --add-subuids"), "{none}");
        let missing = range_for(&dir.path().join("nope"), "bob", 1001, 1).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }
}
