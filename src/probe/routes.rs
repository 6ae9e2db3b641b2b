//! Every route the probe tries to the host canary. Each escape attempt runs in a
//! forked child, so whatever it does to its root and working directory, the probe's
//! own view is untouched.

use isolab::container::canary::{ENV, MARKER};
use nix::unistd::{chdir, chroot, fchdir};
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;

const READ: i32 = 0;
const MISSING: i32 = 1;
const REFUSED: i32 = 2;
/// A file is there, but its first line is not the canary's marker.
const NOT_CANARY: i32 = 3;

const NOT_CANARY_TEXT: &str = "its first line must be `isolab host canary`";

/// Read the canary at `path` and check it is the host's (by its first line).
fn read_canary(path: &Path) -> i32 {
    match std::fs::read_to_string(path) {
        Ok(text) if text.starts_with(MARKER) => READ,
        Ok(_) => NOT_CANARY,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => MISSING,
        Err(_) => REFUSED,
    }
}

pub fn by_path(canary: Option<&Path>) -> String {
    let Some(canary) = canary else {
        return not_checked();
    };
    match read_canary(canary) {
        READ => "READABLE".into(),
        MISSING => "hidden (no such file under my root)".into(),
        NOT_CANARY => format!("found a file there, but not an isolab canary ({NOT_CANARY_TEXT})"),
        _ => "refused (permission denied)".into(),
    }
}

/// The classic escape from chroot(2): chroot into a subdirectory *without* moving
/// into it, so the working directory is now outside the root; climb `..` (the kernel
/// stops a climb only at the process's root, which we are no longer under) up to the
/// real top of the mount tree; then chroot(".") there and read the canary.
pub fn chroot_escape(canary: Option<&Path>) -> String {
    let Some(canary) = canary else {
        return not_checked();
    };
    let code = in_fork(|| {
        if chdir("/").is_err() {
            return MISSING;
        }
        // Any directory below the root will do; /etc is in every rootfs and
        // needs no write access.
        match chroot("/etc") {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) => return REFUSED,
            Err(_) => return MISSING,
        }
        for _ in 0..64 {
            let _ = chdir("..");
        }
        if chroot(".").is_err() {
            return REFUSED;
        }
        read_canary(canary)
    });
    match code {
        Some(READ) => "READABLE (chroot into /etc, climb .., chroot .)".into(),
        Some(REFUSED) => "blocked (chroot refused: EPERM)".into(),
        Some(NOT_CANARY) => {
            format!("climbed out, but the file there is not an isolab canary ({NOT_CANARY_TEXT})")
        }
        _ => "blocked (climbing .. ends at my own root)".into(),
    }
}

/// /proc/PID/root is a magic link to another process's root directory: if /proc
/// shows a process that lives outside the box, its root is the host's.
pub fn proc_root(canary: Option<&Path>) -> String {
    let Some(canary) = canary else {
        return not_checked();
    };
    let Some(pids) = crate::view::proc_pids() else {
        return "no route (/proc is not mounted)".into();
    };
    let relative = canary.strip_prefix("/").unwrap_or(canary);
    for pid in pids {
        let path = Path::new("/proc")
            .join(pid.to_string())
            .join("root")
            .join(relative);
        if read_canary(&path) == READ {
            // Not naming the pid: it is the host's, different on every machine.
            return "READABLE (through a /proc/PID/root that is the host's)".into();
        }
    }
    "blocked (no process in /proc has the host's root)".into()
}

/// A directory descriptor inherited from outside the box points at the host's tree
/// whatever our root is: fchdir(2) to it, climb `..`, and open the canary from there
/// (runc's CVE-2024-21626 was a leaked descriptor like this one). The box's other
/// processes count too: a descriptor held by our parent (init, say) opens again
/// through /proc/PID/fd/N, as in runc's CVE-2016-9962, where the box reached the
/// descriptors of `runc init` that way.
pub fn inherited_fd(canary: Option<&Path>, fds: &[RawFd]) -> String {
    let Some(canary) = canary else {
        return not_checked();
    };
    let relative = canary.strip_prefix("/").unwrap_or(canary).to_path_buf();
    let climb_from = |dir: BorrowedFd| {
        in_fork(|| {
            if fchdir(dir).is_err() {
                return REFUSED;
            }
            for _ in 0..64 {
                let _ = chdir("..");
            }
            read_canary(&relative)
        }) == Some(READ)
    };
    let mine: Vec<RawFd> = fds
        .iter()
        .copied()
        .filter(|&fd| fd > 2 && crate::view::fd_kind(fd) == "a directory")
        .collect();
    for &fd in &mine {
        // SAFETY: the descriptor is open (we listed it) and outlives this borrow.
        if climb_from(unsafe { BorrowedFd::borrow_raw(fd) }) {
            return format!("READABLE (fchdir to fd {fd}, climb ..)");
        }
    }
    let mut theirs = 0;
    for (pid, path) in ancestors_directory_fds() {
        theirs += 1;
        let Ok(dir) = std::fs::File::open(&path) else {
            continue;
        };
        if climb_from(std::os::fd::AsFd::as_fd(&dir)) {
            let whose = if pid == 1 {
                "init".to_string()
            } else {
                format!("pid {pid}")
            };
            return format!(
                "READABLE ({whose} holds a directory: open {}, climb ..)",
                path.display()
            );
        }
    }
    if mine.is_empty() && theirs == 0 {
        return "no route (no directory descriptor was inherited)".into();
    }
    "blocked (the inherited directories lead nowhere)".into()
}

/// Our parent, its parent, and so on up to init (or as far as /proc shows them).
/// Empty where /proc is not mounted.
fn ancestors() -> Vec<u32> {
    let parent_of = |pid: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": the name may hold spaces, so split after ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut found = Vec::new();
    let mut pid = parent_of("self");
    while let Some(p) = pid.filter(|&p| p != 0) {
        found.push(p);
        pid = if p == 1 {
            None
        } else {
            parent_of(&p.to_string())
        };
    }
    found
}

/// The directory descriptors our ancestors hold, as paths under /proc/PID/fd that
/// open them again.
fn ancestors_directory_fds() -> Vec<(u32, std::path::PathBuf)> {
    let mut found = Vec::new();
    for p in ancestors() {
        let dir = std::path::PathBuf::from(format!("/proc/{p}/fd"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            let fd: Option<u32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
            if is_dir && fd.is_some_and(|fd| fd > 2) {
                found.push((p, entry.path()));
            }
        }
    }
    found
}

/// A runtime that passes its own environment on hands the box whatever secrets the
/// caller's shell holds. The canary variable stands for them. A runtime that cleans
/// the command's environment may still leave the caller's in its init, whose
/// /proc/PID/environ any process of the box may read if the kernel lets it
/// ptrace init (same uid, and no capability init has that it lacks).
pub fn environment() -> String {
    if std::env::var(ENV).is_ok_and(|v| v.starts_with(MARKER)) {
        return format!("READABLE (${ENV}: the caller's environment came in)");
    }
    for pid in ancestors() {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let found = environ.split(|b| *b == 0).any(|var| {
            var.strip_prefix(format!("{ENV}=").as_bytes())
                .is_some_and(|v| v.starts_with(MARKER.as_bytes()))
        });
        if found {
            let whose = if pid == 1 {
                "init".to_string()
            } else {
                format!("pid {pid}")
            };
            return format!("READABLE (${ENV} in {whose}'s environment, /proc/{pid}/environ)");
        }
    }
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    match names.len() {
        0 => "not passed in (my environment is empty)".into(),
        n if n > 8 => format!("not passed in (my environment has {n} variables)"),
        _ => format!("not passed in (my environment: {})", names.join(" ")),
    }
}

fn not_checked() -> String {
    "not checked (no --canary given)".into()
}

/// Run `f` in a forked child and return its exit code.
pub fn in_fork(f: impl FnOnce() -> i32) -> Option<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};
    // SAFETY: the probe is single-threaded, so the child can run ordinary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = f();
            // SAFETY: _exit takes no pointers and ends the child at once.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            _ => None,
        },
        Err(_) => None,
    }
}
