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
//! The probe now sees only its own processes (init and itself) and its three mounts,
//! and every route to the host canary fails: by path, by the chroot escape, through
//! `/proc/*/root` and through a leaked descriptor.
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
// `cargo run -- check 3`. (Generated from solutions/03-mount-namespace.rs: `cargo run -- reset 3`
// brings this version back.)

use isolab::container;
use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::SigSet;
use nix::unistd::{chdir, pivot_root};

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
    #[command(flatten)]
    command: CommandArgs,
}

/// What init needs to build the box.
struct BoxSpec<'a> {
    rootfs: &'a Path,
    hostname: &'a str,
    read_only: bool,
    command: &'a Command,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("unshare(2) of new namespaces")?;
        isolab::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::rootfs::need_mount_points(&rootfs, &["proc", "dev"])?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            read_only: args.read_only,
            command: &command,
        };
        run(&spec)
    })
}

fn run(spec: &BoxSpec) -> Result<i32> {
    let signals = container::waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let lifeline = Lifeline::new()?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: this program has no other threads, so the child may run any code.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            lifeline.die_with_parent()?;
            init(spec, &signals)
        }),
        ForkResult::Parent { child } => container::supervise(child, &signals),
    }
}

// ANCHOR: init
/// PID 1 of the box: namespaces, a private mount table, the new root, /proc and
/// /dev; then the command as its child, supervised until it ends.
fn init(spec: &BoxSpec, signals: &SigSet) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    container::close_inherited_fds()?;
    let namespaces = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNS;
    container::enter_namespaces(namespaces, spec.hostname)?;
    make_mounts_private()?;
    pivot_into(spec.rootfs)?;
    mount_proc()?;
    container::mount_dev()?;
    if spec.read_only {
        container::remount_read_only("/")?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            container::exec(spec.command)
        }),
        ForkResult::Parent { child } => std::process::exit(container::supervise(child, signals)?),
    }
}
// ANCHOR_END: init

/// A new mount namespace starts as a copy of the host's, and on most hosts (systemd
/// makes "/" shared) its mounts are still *peers* of the host's: a mount made in
/// one appears in the other. Cut that tie, for every mount, before mounting anything.
fn make_mounts_private() -> Result<()> {
    // ANCHOR: make_mounts_private
    // TODO: mount(2) with no source, target "/", no type, and flags MS_REC | MS_PRIVATE:
    //       every mount in our new namespace stops propagating to and from the host.
    //       (Pass None::<&str> for the source, the type and the data.)
    todo!(
        "step 03, `make_mounts_private`: not written yet. Read the TODO above this line in chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: make_mounts_private
}

/// Make `rootfs` the root of our mount namespace and detach the host's tree.
fn pivot_into(rootfs: &Path) -> Result<()> {
    // ANCHOR: pivot_into
    // TODO: pivot_root(2) needs the new root to be a mount: bind-mount `rootfs` onto itself
    //       (MS_BIND | MS_REC). Then chdir into it and pivot_root(".", "."): the old root
    //       is stacked under the new one at "/". umount2(".", MNT_DETACH) detaches it,
    //       and chdir("/") puts us at the top of the new root.
    todo!(
        "step 03, `pivot_into`: not written yet. Read the TODO above this line in chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: pivot_into
}

/// A procfs shows the PID namespace of the process that mounts it: mounted by init,
/// it shows the box's processes only.
fn mount_proc() -> Result<()> {
    // ANCHOR: mount_proc
    // TODO: mount(2) a new procfs: source "proc", target "/proc", type "proc", flags
    //       MS_NOSUID | MS_NODEV | MS_NOEXEC. Mounted by init, it lists the box's PIDs.
    todo!(
        "step 03, `mount_proc`: not written yet. Read the TODO above this line in chapters/03-mount-namespace.rs, or run `cargo run -- hint 3`"
    );
    // ANCHOR_END: mount_proc
}
