//! # Step 03: a mount namespace, pivot_root, and a /proc of its own
//!
//! Step 02, with the filesystem walls made real. init now gets its own mount table.
//! The table is made private first, so nothing it mounts ever propagates to the
//! host. The rootfs becomes the root with pivot_root(2) instead of chroot(2), and
//! the old root (the host's whole tree) is detached, so no `..` leads back to it.
//! The box gets a fresh `/proc` for its own PID namespace and a minimal `/dev` on
//! tmpfs. Only stdin, stdout and stderr cross into the box. With `--read-only`,
//! the root is mounted read-only.
//!
//! The probe now sees only its own processes (init and itself) and its three
//! mounts, and every route to the host canary fails: by path, by the chroot escape,
//! through `/proc/*/root` and through a leaked descriptor.
//!
//! Syscalls: mount(2) with MS_PRIVATE, MS_BIND and MS_REMOUNT; pivot_root(2);
//! umount2(2) with MNT_DETACH; mknod(2); close_range(2); on top of step 02.
//!
//! ```text
//! $ sudo target/debug/03-mount-namespace --rootfs /tmp/rootfs -- /bin/probe
//! processes: 2 (1 init, 2 probe)
//! mounts: 3 (/ /proc /dev)
//! canary via chroot escape: blocked (climbing .. ends at my own root)
//! ```

// Your copy of step 03. Replace each todo!() with your code, then run
// `cargo run -- check 3`. (Generated from solutions/03-mount-namespace.rs:
// `cargo run -- reset 3` brings this version back.)

use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::SigSet;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknod};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, pivot_root};

// The finished steps this one builds on: step 02's own file, and through it
// 00-01's.
#[path = "../solutions/02-namespaces.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod namespaces;
pub use namespaces::{chroot, process};

/// Step 03: run a command with its own mount table, root and /proc (pivot_root).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    #[command(flatten)]
    hostname: HostnameArg,
    /// Mount the box's root read-only
    #[arg(long)]
    read_only: bool,
    /// Get one thing wrong on purpose, to see what it is for (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// leave the mount table shared: on a host whose "/" is shared (systemd's),
    /// the box's mounts show up on the host
    Private,
    /// chroot into the rootfs, as step 01 does, instead of pivot_root
    Chroot,
    /// close inherited descriptors in the command only, not in init
    CloseFds,
}

/// What init needs to build the box.
pub struct BoxSpec<'a> {
    pub rootfs: &'a Path,
    pub hostname: &'a str,
    pub read_only: bool,
    pub command: &'a Command,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("unshare(2) of new namespaces")?;
        isolab::container::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::container::rootfs::need_mount_points(&rootfs, &["proc", "dev"])?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            read_only: args.read_only,
            command: &command,
        };
        run(&spec, &args.mistakes)
    })
}

fn run(spec: &BoxSpec, mistakes: &[Mistake]) -> Result<i32> {
    let signals = namespaces::waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let lifeline = Lifeline::new()?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: this program has no other threads, so the child may run any code.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            lifeline.die_with_parent()?;
            init(spec, &signals, mistakes)
        }),
        ForkResult::Parent { child } => namespaces::supervise(child, &signals),
    }
}

// ANCHOR: init
/// PID 1 of the box: namespaces, a private mount table, the new root, /proc and
/// /dev; then the command as its child, supervised until it ends.
fn init(
    spec: &BoxSpec,
    signals: &SigSet,
    mistakes: &[Mistake],
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    let wrong = |mistake| mistakes.contains(&mistake);
    if !wrong(Mistake::CloseFds) {
        close_inherited_fds()?;
    }
    let namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS;
    namespaces::enter_namespaces(namespaces, spec.hostname)?;
    if !wrong(Mistake::Private) {
        make_mounts_private()?;
    }
    if wrong(Mistake::Chroot) {
        chroot::enter_rootfs(spec.rootfs)?;
    } else {
        pivot_into(spec.rootfs)?;
    }
    mount_proc()?;
    mount_dev()?;
    if spec.read_only {
        remount_read_only("/")?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            if wrong(Mistake::CloseFds) {
                close_inherited_fds()?; // too late: init still holds them
            }
            process::exec(spec.command)
        }),
        ForkResult::Parent { child } => {
            std::process::exit(namespaces::supervise(child, signals)?)
        }
    }
}
// ANCHOR_END: init

// ANCHOR: close_inherited_fds
/// Close every descriptor but 0, 1 and 2, first thing in init: what the runtime
/// inherited must not reach the box, not even through /proc/1/fd. runc's
/// CVE-2024-21626 was one such descriptor, a directory of the host's.
pub fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range takes two numbers and flags and touches no memory of
    // ours; nothing in init still uses a descriptor above 2.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    Errno::result(rc).context("close_range(3, ~0)")?;
    Ok(())
}
// ANCHOR_END: close_inherited_fds

/// A new mount namespace starts as a copy of the host's, and on most hosts (systemd
/// makes "/" shared) its mounts are still *peers* of the host's: a mount made in
/// one appears in the other. Cut that tie, for every mount, before mounting
/// anything.
pub fn make_mounts_private() -> Result<()> {
    // ANCHOR: make_mounts_private
    // TODO: mount(2) with no source, target "/", no type, and flags MS_REC |
    //       MS_PRIVATE: every mount in our new namespace stops propagating to and
    //       from the host. (Pass None::<&str> for the source, the type and the
    //       data.)
    todo!(
        "step 03, `make_mounts_private`: not written yet. Read the TODO above this \
         line in chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: make_mounts_private
}

/// Make `rootfs` the root of our mount namespace and detach the host's tree.
pub fn pivot_into(rootfs: &Path) -> Result<()> {
    // ANCHOR: pivot_into
    // TODO: pivot_root(2) needs the new root to be a mount: bind-mount `rootfs`
    //       onto itself (MS_BIND | MS_REC). Then chdir into it and pivot_root(".",
    //       "."): the old root is stacked under the new one at "/". umount2(".",
    //       MNT_DETACH) detaches it, and chdir("/") puts us at the top of the new
    //       root.
    todo!(
        "step 03, `pivot_into`: not written yet. Read the TODO above this line in \
         chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: pivot_into
}

/// pivot_root says only EINVAL for most of what can go wrong; say what it means.
pub fn pivot_error(errno: Errno, rootfs: &Path) -> anyhow::Error {
    let why = match errno {
        Errno::EINVAL if root_is_shared() => {
            ": \"/\" is a shared mount, and pivot_root refuses to move mounts that \
             propagate to another mount namespace: make them private first \
             (MS_PRIVATE | MS_REC on /)"
        }
        Errno::EINVAL => {
            ": the rootfs must be on a filesystem that can be mounted elsewhere (not the \
             initial ramfs), and the runtime must not itself run inside a chroot"
        }
        _ => "",
    };
    anyhow::Error::new(errno)
        .context(format!("pivot_root(., .) in {}{why}", rootfs.display()))
}

/// Is our "/" a shared mount? The optional fields of its line in mountinfo say
/// `shared:N` if so.
fn root_is_shared() -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4) == Some(&"/")
            && fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"))
    })
}

/// A procfs shows the PID namespace of the process that mounts it: mounted by init,
/// it shows the box's processes only.
pub fn mount_proc() -> Result<()> {
    mount_proc_at(Path::new("/proc"))
}

/// A new procfs at `target` (step 06 mounts it inside the rootfs, before the
/// pivot).
pub fn mount_proc_at(target: &Path) -> Result<()> {
    // ANCHOR: mount_proc
    // TODO: mount(2) a new procfs: source "proc", target `target` ("/proc" here),
    //       type "proc", flags MS_NOSUID | MS_NODEV | MS_NOEXEC. Mounted by init,
    //       it lists the box's PIDs.
    todo!(
        "step 03, `mount_proc`: not written yet. Read the TODO above this line in \
         chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: mount_proc
}

// ANCHOR: mount_dev
/// The device nodes every program expects, with their major and minor numbers.
pub const DEV_NODES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A minimal /dev on a tmpfs: the device nodes every program expects, and no
/// others (no disks, no /dev/mem, no /dev/kvm).
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
    for (name, major, minor) in DEV_NODES {
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
    link_std_fds(Path::new("/dev"))
}

/// /dev/fd, /dev/stdin, /dev/stdout and /dev/stderr in `dev`, links into
/// /proc/self/fd.
pub fn link_std_fds(dev: &Path) -> Result<()> {
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let link = dev.join(link);
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("symlink({target}, {})", link.display()))?;
    }
    Ok(())
}
// ANCHOR_END: mount_dev

/// Remount the mount at `path` read-only, keeping the flags it has (a rootfs under
/// a nosuid /tmp stays nosuid). A bind mount's flags change only with MS_REMOUNT |
/// MS_BIND, which leaves the filesystem itself, shared with the host, alone.
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
