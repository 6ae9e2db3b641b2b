//! The finished box of steps 02 and 03, for the later steps to build on.
//!
//! Each function here is the reference answer to an earlier step (the book explains
//! it there), kept in one place so that steps 03 to 05 stay short and show only
//! what they add. Read them as "what you already wrote".

use crate::run::Command;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknod};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, chdir, execv, pivot_root, sethostname};
use std::convert::Infallible;
use std::path::Path;

/// The signals our processes take with sigwait: the three an init passes on to
/// the command, and SIGCHLD, which says a child has ended (step 02).
pub fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

/// Wait for `child`, passing TERM, INT and HUP on to it and reaping every child
/// that ends, orphans included; returns `child`'s status as a shell reports it
/// (step 02).
pub fn supervise(child: Pid, signals: &SigSet) -> Result<i32> {
    loop {
        let signal = signals.wait().context("sigwait()")?;
        if signal != Signal::SIGCHLD {
            match kill(child, signal) {
                Ok(()) | Err(Errno::ESRCH) => continue,
                Err(e) => return Err(e).with_context(|| format!("kill({child}, {signal})")),
            }
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    return Ok(128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => return Err(e).context("waitpid(-1, WNOHANG)"),
            }
        }
    }
}

/// Become the command (step 00).
pub fn exec(command: &Command) -> Result<Infallible> {
    execv(&command.path, &command.argv)
        .with_context(|| format!("execv({})", command.path.to_string_lossy()))
}

/// Close every descriptor but 0, 1 and 2, in init, before the box is built: what
/// the runtime inherited must not reach the box, not even through /proc/1/fd
/// (step 03).
pub fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range takes two numbers and flags and touches no memory of ours;
    // nothing in init still uses a descriptor above 2.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    Errno::result(rc).context("close_range(3, ~0)")?;
    Ok(())
}

/// New namespaces of the kinds in `flags` for init, and the box's hostname (steps
/// 02 and 03; later steps add kinds).
pub fn enter_namespaces(flags: CloneFlags, hostname: &str) -> Result<()> {
    unshare(flags).with_context(|| format!("unshare({flags:?})"))?;
    sethostname(hostname).with_context(|| format!("sethostname({hostname})"))?;
    Ok(())
}

/// Stop every mount in our namespace from propagating to or from the host (step 03).
pub fn make_mounts_private() -> Result<()> {
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .context("mount(/, MS_REC | MS_PRIVATE)")
}

/// Make `rootfs` the root of our mount namespace and detach the host's tree (step 03).
pub fn pivot_into(rootfs: &Path) -> Result<()> {
    let none = None::<&str>;
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .with_context(|| format!("mount({0}, {0}, MS_BIND | MS_REC)", rootfs.display()))?;
    chdir(rootfs).with_context(|| format!("chdir({})", rootfs.display()))?;
    pivot_root(".", ".").map_err(|e| pivot_error(e, rootfs))?;
    umount2(".", MntFlags::MNT_DETACH).context("umount2(old root, MNT_DETACH)")?;
    chdir("/").context("chdir(/)")?;
    Ok(())
}

/// pivot_root says only EINVAL for most of what can go wrong; say what it means.
pub fn pivot_error(errno: Errno, rootfs: &Path) -> anyhow::Error {
    let why = match errno {
        Errno::EINVAL => {
            ": the rootfs must be on a filesystem that can be mounted elsewhere (not the \
             initial ramfs), and the runtime must not itself run inside a chroot"
        }
        _ => "",
    };
    anyhow::Error::new(errno).context(format!("pivot_root(., .) in {}{why}", rootfs.display()))
}

/// A procfs for the box's PID namespace (step 03).
pub fn mount_proc() -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
        .context("mount(proc, /proc, proc)")
}

// ANCHOR: mount_dev
/// A minimal /dev on a tmpfs: the device nodes every program expects, and no
/// others (no disks, no /dev/mem, no /dev/kvm) (step 03).
pub fn mount_dev() -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        "/dev",
        Some("tmpfs"),
        flags,
        Some("mode=755,size=64k"),
    )
    .context("mount(tmpfs, /dev, tmpfs)")?;
    let nodes = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    for (name, major, minor) in nodes {
        let path = format!("/dev/{name}");
        let mode = Mode::from_bits_truncate(0o666);
        mknod(path.as_str(), SFlag::S_IFCHR, mode, makedev(major, minor))
            .with_context(|| format!("mknod({path}, {major}:{minor})"))?;
        // mknod's mode went through our umask: set it exactly.
        fchmodat(
            nix::fcntl::AT_FDCWD,
            path.as_str(),
            mode,
            FchmodatFlags::FollowSymlink,
        )
        .with_context(|| format!("chmod({path}, 666)"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, format!("/dev/{link}"))
            .with_context(|| format!("symlink({target}, /dev/{link})"))?;
    }
    Ok(())
}
// ANCHOR_END: mount_dev

/// Remount the mount at `path` read-only, keeping the flags it has (a rootfs under
/// a nosuid /tmp stays nosuid) (step 03).
pub fn remount_read_only(path: &str) -> Result<()> {
    let current = statvfs(path)
        .with_context(|| format!("statvfs({path})"))?
        .flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if current.contains(has) {
            flags |= keep;
        }
    }
    let none = None::<&str>;
    mount(none, path, none, flags, none)
        .with_context(|| format!("mount({path}, MS_REMOUNT | MS_BIND | MS_RDONLY)"))
}
