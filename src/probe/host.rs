//! What the probe can do *to the host* from inside its box: change the kernel's
//! settings for the whole machine, read the kernel's own tables, type into the
//! terminal it was started from, and leave files behind that hand root to the host's
//! other users. Each try is harmless: a setting is opened for writing and closed
//! without a write, TIOCSTI gets a null pointer (the kernel checks the permission
//! first, then fails to read the byte), and what the probe plants it removes again.

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Kernel settings that belong to the whole machine, with the name `sysctl` gives
/// them. `core_pattern` is the worst: set to `|/some/program`, it makes the host's
/// kernel run that program as root the next time any process crashes.
const HOST_SETTINGS: [(&str, &str); 3] = [
    ("/proc/sys/kernel/core_pattern", "kernel.core_pattern"),
    ("/proc/sys/kernel/panic_on_oops", "kernel.panic_on_oops"),
    ("/proc/sys/vm/overcommit_memory", "vm.overcommit_memory"),
];

/// Tables of the kernel's own that no box needs: the keys of the kernel's keyrings
/// (each with its serial number, the handle keyctl(2) takes), how many keys each
/// user holds, and every timer on the machine, with the name and PID of the process
/// that set it.
const KERNEL_TABLES: [(&str, &str); 3] = [
    ("/proc/keys", "keys"),
    ("/proc/key-users", "key-users"),
    ("/proc/timer_list", "timer_list"),
];

/// Open each host setting for writing, never write, close.
pub fn kernel_settings() -> String {
    if !Path::new("/proc/self").exists() {
        return "no /proc to reach them through".into();
    }
    let mut writable = Vec::new();
    let mut refusal = None;
    for (path, name) in HOST_SETTINGS {
        match open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                drop(fd); // closed without a single write
                writable.push(name);
            }
            Err(Errno::ENOENT) => {}
            Err(e) => refusal = refusal.or(Some(e)),
        }
    }
    match (writable.is_empty(), refusal) {
        (false, _) => format!(
            "WRITABLE: {} (settings of the whole host)",
            writable.join(" ")
        ),
        (true, Some(Errno::EACCES)) if nix::unistd::geteuid().is_root() => {
            "refused (EACCES: they are the host root's, and I am root only in my own user namespace)"
                .into()
        }
        (true, Some(e)) => format!("refused ({})", errno_says(e)),
        (true, None) => "none of them here".into(),
    }
}

/// Read a few bytes of each kernel table: masked, it reads as empty or is refused.
/// A mask is a mount over the table, and a mount is a wall only if the box may not
/// take it off: so, masked, try that too, as a box's root would, in a forked child
/// with a mount namespace of its own (a copy, whose mounts propagate nowhere: what
/// it unmounts stays unmounted in the copy alone, and the copy dies with it).
pub fn kernel_tables() -> String {
    if !Path::new("/proc/self").exists() {
        return "no /proc to read them from".into();
    }
    let readable = readable_tables();
    if !readable.is_empty() {
        return format!("READABLE: {} (the host kernel's own)", readable.join(" "));
    }
    const UNMOUNTED: i32 = 0;
    const FRESH: i32 = 1;
    let unmasked = crate::routes::in_fork(|| {
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        let none = None::<&str>;
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_err()
            || mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).is_err()
        {
            return 2;
        }
        for (path, _) in KERNEL_TABLES {
            let _ = umount2(path, MntFlags::MNT_DETACH);
        }
        if !readable_tables().is_empty() {
            return UNMOUNTED;
        }
        // A procfs of its own, mounted over the masked one, masks nothing.
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if mount(Some("proc"), "/proc", Some("proc"), flags, none).is_ok()
            && !readable_tables().is_empty()
        {
            return FRESH;
        }
        2
    });
    match unmasked {
        Some(UNMOUNTED) => "READABLE once unmasked: the masks are mounts I may unmount".into(),
        Some(FRESH) => "READABLE in a fresh procfs: I may mount one, and it has no masks".into(),
        _ => "masked (empty or refused)".into(),
    }
}

/// The kernel tables that give at least one byte to a reader here.
fn readable_tables() -> Vec<&'static str> {
    KERNEL_TABLES
        .iter()
        .filter(|(path, _)| {
            use std::io::Read;
            let mut first = [0u8; 64];
            std::fs::File::open(path).is_ok_and(|mut f| f.read(&mut first).is_ok_and(|n| n > 0))
        })
        .map(|(_, name)| *name)
        .collect()
}

/// TIOCSTI pushes a byte into a terminal's input, as if it had been typed there. A
/// box that can do it to the caller's terminal types commands the caller's shell
/// runs when the box exits. The byte's address is NULL: the kernel checks the
/// permission first and only then reads the byte, so EFAULT means "allowed" and
/// nothing is typed.
pub fn type_into_terminal() -> String {
    // SAFETY: isatty takes a descriptor number and touches no memory of ours.
    let Some(fd) = (0..=2).find(|&fd| unsafe { libc::isatty(fd) } == 1) else {
        return "no terminal on fds 0-2".into();
    };
    // tcgetsid(3) answers only for our own controlling terminal.
    // SAFETY: tcgetsid takes a descriptor number and touches no memory of ours.
    let controlling = unsafe { libc::tcgetsid(fd) } >= 0;
    // SAFETY: a null pointer for the byte: the kernel reports EFAULT instead of
    // reading it, after the permission checks, and pushes nothing.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSTI, std::ptr::null::<u8>()) };
    match Errno::result(rc) {
        Err(Errno::EFAULT) | Ok(_) if controlling => format!(
            "allowed (fd {fd} is my controlling terminal: what I push there is typed into it)"
        ),
        Err(Errno::EFAULT) | Ok(_) => format!("allowed (into fd {fd}, a terminal not my own)"),
        Err(Errno::EPERM) if !controlling => {
            "refused (EPERM: it is not my controlling terminal)".into()
        }
        Err(Errno::EIO) => "refused (EIO: this kernel's dev.tty.legacy_tiocsti is off)".into(),
        Err(e) => format!("refused ({})", errno_says(e)),
    }
}

/// /proc/1/exe opens the program PID 1 runs. In our boxes PID 1 is init, a forked copy
/// of the runtime, so this is the runtime's own binary on the host. runc's
/// CVE-2019-5736 went this way: a box that could write runc's binary replaced it,
/// and the next `docker exec` ran the box's code as root on the host. The kernel
/// refuses to write a program while it runs (ETXTBSY); the exploit waited until runc
/// had stopped. Opened for writing, never written.
pub fn init_program() -> String {
    if !Path::new("/proc/1").exists() {
        return "no /proc to reach it through".into();
    }
    match open(
        "/proc/1/exe",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(_) => "WRITABLE (/proc/1/exe: init's program, on the host)".into(),
        Err(Errno::ETXTBSY) => "READABLE, and writable once it stops running (ETXTBSY now)".into(),
        Err(write) => match open(
            "/proc/1/exe",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(_) => format!("READABLE (writing: {})", errno_says(write)),
            Err(read) => format!("refused ({})", errno_says(read)),
        },
    }
}

/// A writable place in the box's own files: its /tmp, which in every box up to
/// step 05 is a directory of the rootfs, and so a directory on the host.
fn writable_tmp() -> Result<PathBuf, String> {
    match nix::sys::statvfs::statvfs("/tmp") {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => {
            Err("not tried (/tmp is read-only)".into())
        }
        Ok(_) => Ok(PathBuf::from("/tmp")),
        Err(e) => Err(format!("not tried (no /tmp: {})", errno_says(e))),
    }
}

/// Make an empty file in /tmp and set its setuid and setgid bits, as `chmod 6755`
/// does; then remove it. A setuid file owned by root, left in a directory that the
/// host's users can reach (a rootfs usually is), runs as root for any of them.
pub fn plant_setuid_file() -> String {
    let dir = match writable_tmp() {
        Ok(dir) => dir,
        Err(why) => return why,
    };
    let path = dir.join(format!(".isolab-planted-{}", std::process::id()));
    let result = match std::fs::File::create(&path) {
        Err(e) => format!("not tried (cannot create a file: {e})"),
        Ok(_) => match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6755)) {
            Err(e) => refused_io(&e),
            Ok(()) => match std::fs::metadata(&path) {
                Ok(m) if m.mode() & 0o4000 != 0 && m.uid() == 0 => match crate::view::host_uid(0) {
                    Some(0) | None => "PLANTED (a setuid-root file, which any host user who \
                             reaches the rootfs runs as root)"
                        .into(),
                    Some(caller) => format!(
                        "planted, but my root is uid {caller} on the host: it runs as that user, \
                             never as root"
                    ),
                },
                Ok(m) if m.mode() & 0o4000 != 0 => {
                    format!("planted, but owned by uid {} (not root: harmless)", m.uid())
                }
                _ => "refused (the bits did not stick)".into(),
            },
        },
    };
    let _ = std::fs::remove_file(&path);
    result
}

/// mknod(2) a character device in /tmp (1:3, /dev/null's numbers, mode 600), then
/// remove it. A box that can make device nodes in the rootfs can make one for the
/// host's disk, open to everybody: the host's users then read the raw disk.
pub fn plant_device_node() -> String {
    let dir = match writable_tmp() {
        Ok(dir) => dir,
        Err(why) => return why,
    };
    let path = dir.join(format!(".isolab-node-{}", std::process::id()));
    let made = nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    );
    let _ = std::fs::remove_file(&path);
    match made {
        Ok(()) => "PLANTED (a device node: one for the host's disk would open it to anyone)".into(),
        Err(e) => format!("refused ({})", errno_says(e)),
    }
}

/// `probe plant-setuid PATH`: copy the probe to PATH with mode 4755 and leave it
/// there, for a test to run as an ordinary host user.
pub fn plant_setuid_copy(path: &Path) -> std::process::ExitCode {
    let Ok(me) = std::env::current_exe() else {
        eprintln!("probe: error: cannot find my own program (/proc/self/exe)");
        return std::process::ExitCode::from(1);
    };
    let made = std::fs::copy(&me, path)
        .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o4755)));
    match made {
        Ok(()) => {
            println!("planted {} (mode 4755)", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("not planted: {}", refused_io(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// `probe open PATH`: open it for reading and writing (a device node the host left in
/// the rootfs, say), close it, and say what the kernel answered.
pub fn open_for_writing(path: &Path) -> std::process::ExitCode {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => {
            println!("opened {}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("not opened: {}", refused_io(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// `probe drop-groups PATH`: read PATH, shed every supplementary group with
/// setgroups(2), as `su` and servers that drop root do, and read it again. A file
/// whose group bits shut out one of our groups (mode 0604, say) opens to "others"
/// once that group is gone: why an unprivileged user namespace gets setgroups(2)
/// only denied (CVE-2014-8989).
pub fn drop_groups_and_read(path: &Path) -> std::process::ExitCode {
    let read = |when: &str| match std::fs::read(path) {
        Ok(_) => println!("{when}: read {}", path.display()),
        Err(e) => println!("{when}: not read: {}", refused_io(&e)),
    };
    read("with my groups");
    match nix::unistd::setgroups(&[]) {
        Ok(()) => println!("setgroups: allowed"),
        Err(e) => println!("setgroups: refused ({})", errno_says(e)),
    }
    read("without them");
    std::process::ExitCode::SUCCESS
}

/// "EPERM: Operation not permitted" style, short.
pub fn errno_says(e: Errno) -> String {
    match e {
        Errno::EROFS => "EROFS: a read-only file system".into(),
        e => format!("{e:?}"),
    }
}

fn refused_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("refused ({})", errno_says(Errno::from_raw(n))),
        None => format!("refused ({e})"),
    }
}
