//! Removing a directory tree that a box filled: a rootfs after its box ended, the
//! cgroups a box made inside its own. Whoever filled it chose its shape, so the walk
//! trusts nothing in it:
//!
//! - **no recursion, and no long paths.** A box can make a tree 100000 levels deep in
//!   a second. A function that calls itself per level runs out of stack on it, and
//!   one that names each entry by its whole path meets ENAMETOOLONG past 4096 bytes
//!   (PATH_MAX). So the walk is a loop, and every system call names one entry
//!   relative to a descriptor of its directory (openat, unlinkat, fstatat). It holds
//!   at most four descriptors open at any depth: it keeps the names still to visit,
//!   not the directories, and climbs back through `..`, checking that `..` is the
//!   very directory (device and inode) it came down from;
//! - **no symlink is followed.** A link the box planted (`/tmp/x -> /home/you`) is
//!   removed as the link it is: directories are opened with O_NOFOLLOW, and an entry
//!   is unlinked, never opened, unless it is a directory itself;
//! - **no mount point is entered** (a directory on another device);
//! - **a directory closed to us** (mode 000, or without write permission) is opened
//!   again (`chmod u+rwx`, which the kernel allows its owner), through an O_PATH
//!   descriptor, so that the mode changed is that directory's and never the target
//!   of a link swapped in;
//! - **what cannot be removed is named**, each path with the call that failed, and
//!   the walk goes on with the rest.

use anyhow::{Context, Result, bail};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Removes one empty directory: given its parent, its name there, and the directory
/// itself (a cgroup's processes are killed through it before its rmdir).
pub type Rmdir<'a> = dyn FnMut(BorrowedFd, &CStr, BorrowedFd) -> nix::Result<()> + 'a;

/// `rm -rf path`, safely: `path` and everything under it, as the module says. A
/// `path` that is a file or a symlink is unlinked itself; one that does not exist is
/// no error.
pub fn remove_all(path: &Path) -> Result<()> {
    walk(path, Leaves::Unlink, &mut |parent, name, _| {
        unlinkat(parent, name, UnlinkatFlags::RemoveDir)
    })
}

/// Remove the directory `path` and every directory under it, leaves first, each
/// with `rmdir`, and leave the other entries alone: the files of a cgroup are the
/// kernel's, and go with their directory.
pub fn remove_dirs(path: &Path, rmdir: &mut Rmdir) -> Result<()> {
    walk(path, Leaves::Keep, rmdir)
}

/// What the walk does with an entry that is not a directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaves {
    Unlink,
    Keep,
}

/// A directory the walk is in: its name in its parent, who it is, and the
/// directories in it still to remove.
struct Level {
    name: CString,
    id: (u64, u64),
    subdirs: Vec<CString>,
    /// Something in it could not be removed, and was named: so can it not.
    failed: bool,
}

/// What could not be removed, each with the call that failed.
struct Failures<'a> {
    top: &'a Path,
    named: Vec<String>,
    count: usize,
}

/// How many failures the error names; it counts the others.
const NAMED: usize = 8;

impl Failures<'_> {
    /// The system call `call` failed on an entry: `names` continue the path
    /// `levels` lead to.
    fn add(&mut self, levels: &[Level], names: &[&CStr], call: &str, errno: Errno) {
        self.note(levels, names, &format!("{call}: {}", errno.desc()));
    }

    /// An entry the walk leaves, and why.
    fn note(&mut self, levels: &[Level], names: &[&CStr], why: &str) {
        self.count += 1;
        if self.named.len() < NAMED {
            let at = shown(self.top, levels, names);
            self.named.push(format!("{at}: {why}"));
        }
    }

    fn result(self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let more = match self.count - self.named.len() {
            0 => String::new(),
            n => format!("; and {n} more"),
        };
        bail!(
            "could not remove all of {}: {}{more}",
            self.top.display(),
            self.named.join("; ")
        )
    }
}

/// The path of an entry for a message: `top`, then the names below it (the first
/// of `levels` and `names` is `top`'s own). Of a deep one, the first and last few
/// names, and how many levels are left out between.
fn shown(top: &Path, levels: &[Level], names: &[&CStr]) -> String {
    let below: Vec<&OsStr> = levels
        .iter()
        .map(|l| l.name.as_c_str())
        .chain(names.iter().copied())
        .skip(1)
        .map(|n| OsStr::from_bytes(n.to_bytes()))
        .collect();
    let mut path = top.to_path_buf();
    // The names below `top` are the box's choice: what a terminal would act on in
    // them is written out, not sent.
    if below.len() <= 8 {
        path.extend(&below);
        return crate::lines::printable(&path.display().to_string());
    }
    path.extend(&below[..3]);
    let tail: std::path::PathBuf = below[below.len() - 3..].iter().collect();
    let left_out = below.len() - 6;
    crate::lines::printable(&format!(
        "{}/({left_out} levels)/{}",
        path.display(),
        tail.display()
    ))
}

fn walk(path: &Path, leaves: Leaves, rmdir: &mut Rmdir) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        bail!("{} names no entry of a directory to remove", path.display());
    };
    let name = CString::new(name.as_bytes()).context("a path with a NUL byte")?;
    let anchor = openat(AT_FDCWD, parent, READ_DIR, Mode::empty())
        .with_context(|| format!("open({})", parent.display()))?;
    let (mut here, stat) = match enter(anchor.as_fd(), &name) {
        Ok(entered) => entered,
        Err((_, Errno::ENOENT)) => return Ok(()),
        Err((_, Errno::ENOTDIR)) if leaves == Leaves::Unlink => {
            return unlinkat(&anchor, name.as_c_str(), UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("unlink({})", path.display()));
        }
        Err((call, errno)) => {
            return Err(errno).with_context(|| format!("{call}({})", path.display()));
        }
    };
    let device = stat.st_dev;
    let mut failures = Failures {
        top: path,
        named: Vec::new(),
        count: 0,
    };
    let (subdirs, failed) = list(here.as_fd(), leaves, &[], &name, &mut failures);
    let mut levels = vec![Level {
        name,
        id: (stat.st_dev, stat.st_ino),
        subdirs,
        failed,
    }];
    loop {
        let level = levels.last_mut().expect("the walk is in a directory");
        if let Some(child) = level.subdirs.pop() {
            match enter(here.as_fd(), &child) {
                Ok((_, stat)) if stat.st_dev != device => {
                    level.failed = true;
                    let why = "a mount point (another filesystem): not entered";
                    failures.note(&levels, &[&child], why);
                }
                Ok((fd, stat)) => {
                    let (subdirs, failed) =
                        list(fd.as_fd(), leaves, &levels, &child, &mut failures);
                    here = fd;
                    levels.push(Level {
                        name: child,
                        id: (stat.st_dev, stat.st_ino),
                        subdirs,
                        failed,
                    });
                }
                Err((_, Errno::ENOENT)) => {}
                // No longer a directory since it was listed: a leaf after all.
                Err((_, Errno::ENOTDIR)) if leaves == Leaves::Unlink => {
                    let flag = UnlinkatFlags::NoRemoveDir;
                    if let Err(e) = unlinkat(here.as_fd(), child.as_c_str(), flag) {
                        level.failed = true;
                        failures.add(&levels, &[&child], "unlinkat", e);
                    }
                }
                Err((_, Errno::ENOTDIR)) => {}
                Err((call, errno)) => {
                    level.failed = true;
                    failures.add(&levels, &[&child], call, errno);
                }
            }
            continue;
        }
        // All in this directory is gone, or named: climb out, and remove it unless
        // something named is still in it.
        let done = levels.pop().expect("the walk is in a directory");
        let up = match levels.last() {
            Some(parent) => climb(here.as_fd(), parent.id)
                .with_context(|| shown(path, &levels, &[&done.name]))?,
            None => anchor.try_clone().context("dup")?,
        };
        let failed = done.failed
            || match rmdir(up.as_fd(), &done.name, here.as_fd()) {
                Ok(()) | Err(Errno::ENOENT) => false,
                Err(e) => {
                    failures.add(&levels, &[&done.name], "rmdir", e);
                    true
                }
            };
        let Some(parent) = levels.last_mut() else {
            return failures.result();
        };
        parent.failed |= failed;
        here = up;
    }
}

/// How the walk opens a directory to read it, or to act in it.
const READ_DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// Open the directory `name` in `parent`, never through a symlink, and make sure
/// its owner may list it and remove what is in it. Its descriptor, and who it is;
/// on failure, the call that failed and why.
fn enter(parent: BorrowedFd, name: &CStr) -> Result<(OwnedFd, FileStat), (&'static str, Errno)> {
    let only_path = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let handle =
        openat(parent, name, only_path, Mode::empty()).map_err(|e| ("openat(O_PATH)", e))?;
    let stat = fstat(&handle).map_err(|e| ("fstat", e))?;
    let mode = stat.st_mode & 0o7777;
    let chmod = if mode & 0o700 == 0o700 {
        Ok(())
    } else {
        // fchmod(2) takes no O_PATH descriptor, but chmod(2) of its link in /proc
        // reaches the directory it holds, and only that one.
        let link = format!("/proc/self/fd/{}", handle.as_raw_fd());
        let wanted = Mode::from_bits_truncate(mode | 0o700);
        let follow = nix::sys::stat::FchmodatFlags::FollowSymlink;
        nix::sys::stat::fchmodat(AT_FDCWD, link.as_str(), wanted, follow)
    };
    match (openat(&handle, ".", READ_DIR, Mode::empty()), chmod) {
        (Ok(fd), _) => Ok((fd, stat)),
        (Err(_), Err(e)) => Err(("chmod(u+rwx)", e)),
        (Err(e), Ok(())) => Err(("openat", e)),
    }
}

/// The directory above `here`, if it is the one the walk came down from (`id`):
/// otherwise someone moved the tree during the walk, and climbing on could lead
/// out of it.
fn climb(here: BorrowedFd, id: (u64, u64)) -> Result<OwnedFd> {
    let up = openat(here, "..", READ_DIR, Mode::empty()).context("openat(..)")?;
    let stat = fstat(&up).context("fstat(..)")?;
    if (stat.st_dev, stat.st_ino) != id {
        bail!(
            "moved while it was being removed: its `..` is no longer the directory it was found in, so the walk stopped there"
        );
    }
    Ok(up)
}

/// The directories in `dir` (whose name is `name`, below `levels`), to enter; with
/// [`Leaves::Unlink`], all else in it is unlinked on the way. What could not be is
/// named in `failures`, and then the second value is true.
fn list(
    dir: BorrowedFd,
    leaves: Leaves,
    levels: &[Level],
    name: &CStr,
    failures: &mut Failures,
) -> (Vec<CString>, bool) {
    let mut listing = match Dir::openat(dir, ".", READ_DIR, Mode::empty()) {
        Ok(listing) => listing,
        Err(e) => {
            failures.add(levels, &[name], "opendir", e);
            return (Vec::new(), true);
        }
    };
    let (mut subdirs, mut failed) = (Vec::new(), false);
    for entry in listing.iter() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                failures.add(levels, &[name], "readdir", e);
                return (subdirs, true);
            }
        };
        let file = entry.file_name();
        if file == c"." || file == c".." {
            continue;
        }
        if is_dir(dir, file, entry.file_type()) {
            subdirs.push(file.to_owned());
        } else if leaves == Leaves::Unlink {
            match unlinkat(dir, file, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    failed = true;
                    failures.add(levels, &[name, file], "unlinkat", e);
                }
            }
        }
    }
    (subdirs, failed)
}

/// Is `file` in `dir` a directory? readdir's answer, or where the filesystem gives
/// none, fstatat's, which looks at a symlink and not where it points.
fn is_dir(dir: BorrowedFd, file: &CStr, listed: Option<Type>) -> bool {
    match listed {
        Some(kind) => kind == Type::Directory,
        None => fstatat(dir, file, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// `levels` directories named `d`, each in the last, made relative to a
    /// descriptor of the one above (the whole path is far longer than PATH_MAX),
    /// with one descriptor open at a time; a file at the bottom if `file`.
    fn deep_tree(top: &Path, levels: usize, file: bool) {
        std::fs::create_dir(top).unwrap();
        let mut here = openat(AT_FDCWD, top, READ_DIR, Mode::empty()).unwrap();
        for _ in 0..levels {
            nix::sys::stat::mkdirat(&here, "d", Mode::from_bits_truncate(0o755)).unwrap();
            here = openat(&here, "d", READ_DIR, Mode::empty()).unwrap();
        }
        if file {
            let create = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            openat(&here, "bottom", create, Mode::from_bits_truncate(0o644)).unwrap();
        }
    }

    /// A scratch directory, on a tmpfs where there is one: ext4 takes a hundred
    /// times longer to make a deep tree.
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap()
    }

    /// How many descriptors this process holds.
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// 20000 levels: a walk that called itself per level would need 20000 frames
    /// (std's remove_dir_all, 20000 descriptors), and one that named entries by
    /// their whole path would meet ENAMETOOLONG near 2000. The cgroup shape too,
    /// directories only, with the descriptors counted along the way.
    #[test]
    fn a_tree_deeper_than_any_path_is_removed_with_few_descriptors() {
        let dir = scratch();
        let top = dir.path().join("deep");
        deep_tree(&top, 20_000, true);
        remove_all(&top).unwrap();
        assert!(!top.exists());
        deep_tree(&top, 20_000, false);
        let before = open_fds();
        let (mut most, mut calls) = (0, 0);
        let mut rmdir = |parent: BorrowedFd, name: &CStr, _: BorrowedFd| {
            calls += 1;
            if calls % 1000 == 1 {
                most = most.max(open_fds());
            }
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        };
        remove_dirs(&top, &mut rmdir).unwrap();
        assert_eq!(calls, 20_001);
        assert!(!top.exists());
        // Other tests of this binary run meanwhile and open files of their own.
        assert!(
            most < before + 32,
            "{most} descriptors open, {before} before"
        );
    }

    /// What cannot be removed is named once, where it is (a deep path shortened),
    /// with the call that failed; the directories above it, which cannot go
    /// either, are not named again, and everything beside it is removed.
    #[test]
    fn what_cannot_be_removed_is_named_once() {
        let dir = scratch();
        let top = dir.path().join("deep");
        deep_tree(&top, 50, true);
        std::fs::create_dir_all(top.join("beside/x")).unwrap();
        // remove_dirs leaves files alone, so the bottom directory stays.
        let mut rmdir = |parent: BorrowedFd, name: &CStr, _: BorrowedFd| {
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        };
        let err = remove_dirs(&top, &mut rmdir).unwrap_err().to_string();
        let at = format!("{}/d/d/d/(44 levels)/d/d/d: rmdir: ", top.display());
        assert!(err.contains(&at), "{err}");
        assert_eq!(err.matches("rmdir").count(), 1, "{err}");
        assert!(!top.join("beside").exists());
        remove_all(&top).unwrap();
    }

    /// A name the box chose reaches the caller's terminal in an error: what a
    /// terminal would act on in it (a title, a screen clear) is written out.
    #[test]
    fn a_name_that_cannot_be_removed_is_named_escaped() {
        let dir = scratch();
        let top = dir.path().join("top");
        let hostile = top.join("x\u{1b}]0;PWNED\u{7}\u{1b}[2J");
        std::fs::create_dir_all(hostile.join("file-inside")).unwrap();
        std::fs::write(hostile.join("file-inside/f"), "").unwrap();
        let mut rmdir = |parent: BorrowedFd, name: &CStr, _: BorrowedFd| {
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        };
        let err = remove_dirs(&top, &mut rmdir).unwrap_err().to_string();
        assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
        assert!(err.contains("x\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J"), "{err}");
        remove_all(&top).unwrap();
    }

    /// Links the box planted, to a file and a directory outside the tree, are
    /// removed as links: what they point to stays, whole. A path that is itself a
    /// link goes the same way, and one that is not there is no error.
    #[test]
    fn symlinks_are_removed_never_followed() {
        let dir = scratch();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        std::fs::write(outside.join("file"), "keep me").unwrap();
        std::fs::write(outside.join("dir/inner"), "keep me too").unwrap();
        let top = dir.path().join("tree");
        std::fs::create_dir_all(top.join("a")).unwrap();
        symlink(outside.join("file"), top.join("a/file")).unwrap();
        symlink(outside.join("dir"), top.join("a/dir")).unwrap();
        symlink(outside.join("dir"), top.join("dir")).unwrap();
        remove_all(&top).unwrap();
        assert!(!top.exists());
        let link = dir.path().join("link");
        symlink(outside.join("dir"), &link).unwrap();
        remove_all(&link).unwrap();
        assert!(link.symlink_metadata().is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("file")).unwrap(),
            "keep me"
        );
        let inner = std::fs::read_to_string(outside.join("dir/inner")).unwrap();
        assert_eq!(inner, "keep me too");
        remove_all(&dir.path().join("not there")).unwrap();
    }

    /// Directories closed to their owner (mode 000, and 0500: it may list but not
    /// remove) are opened again and removed with what is in them.
    #[test]
    fn directories_closed_to_their_owner_are_opened_again() {
        let dir = scratch();
        let top = dir.path().join("tree");
        for (sub, mode) in [("shut", 0o000), ("read-only", 0o500)] {
            std::fs::create_dir_all(top.join(sub).join("inner")).unwrap();
            std::fs::write(top.join(sub).join("inner/file"), "x").unwrap();
            let closed = std::fs::Permissions::from_mode(mode);
            std::fs::set_permissions(top.join(sub), closed).unwrap();
        }
        remove_all(&top).unwrap();
        assert!(!top.exists());
    }
}
